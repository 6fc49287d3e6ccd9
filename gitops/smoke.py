"""Is an environment serving the model its overlay names, and serving it right?

CI runs this after a bump is merged: wait until the service lists the overlay's model
id (``GET /v2/models/mpg`` -> ``versions``), then send a smoke set of known cars and
compare every answer with what the model file itself predicts (fetched from the
store and verified): the service must give the same numbers, and they must be
plausible for those cars.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from core.errors import MlopsError
from core.features import FEATURE_NAMES
from core.uri import StoreURI

#: Known cars from the Auto MPG data (canonical order and units) with their measured mpg.
SMOKE_CARS = (
    ((8, 307.0, 130.0, 3504.0, 12.0, 1970, 1), 18.0),  # chevrolet chevelle malibu
    ((4, 97.0, 88.0, 2130.0, 14.5, 1970, 3), 27.0),  # datsun pl510
    ((4, 140.0, 86.0, 2790.0, 15.6, 1982, 1), 27.0),  # ford mustang gl
    ((4, 97.0, 52.0, 2130.0, 24.6, 1982, 2), 44.0),  # vw pickup
    ((6, 225.0, 105.0, 3439.0, 15.5, 1971, 1), 16.0),  # plymouth satellite custom
)
TOLERANCE = 1e-6  # the service and the model file must agree (JSON floats)
PLAUSIBLE = 0.35  # and be within 35 % of what the car really did


class SmokeError(MlopsError):
    """The environment does not serve the model its overlay names, or serves it wrong."""


@dataclass(frozen=True)
class SmokeResult:
    model_id: str
    waited_seconds: float
    predictions: list[float]


def wait_for_model(client, base_url: str, model_id: str, timeout: float, interval: float = 5.0) -> float:
    """Seconds until ``GET /v2/models/mpg`` lists ``model_id``; ``SmokeError`` after ``timeout``."""
    import httpx

    started, seen = time.monotonic(), "nothing"
    while True:
        try:
            response = client.get(f"{base_url}/v2/models/mpg", timeout=10)
            seen = f"{response.status_code} {response.text[:120]}"
            if response.status_code == 200 and model_id in response.json().get("versions", []):
                return time.monotonic() - started
        except (httpx.HTTPError, ValueError) as e:
            seen = f"{type(e).__name__}: {e}"
        if time.monotonic() - started > timeout:
            raise SmokeError(f"{base_url} did not serve model {model_id[:12]} within {timeout:.0f} s (last: {seen})")
        time.sleep(interval)


def smoke(base_url: str, uri: StoreURI, model, timeout: float = 600, interval: float = 5.0) -> SmokeResult:
    """Wait for ``uri``'s model at ``base_url``, then check the smoke cars against ``model`` (its file)."""
    import httpx

    with httpx.Client() as client:
        waited = wait_for_model(client, base_url.rstrip("/"), uri.model_id, timeout, interval)
        cars = np.array([car for car, _ in SMOKE_CARS], dtype=float)
        response = client.post(f"{base_url.rstrip('/')}/v1/models/mpg:predict", json={"instances": cars.tolist()})
        if response.status_code != 200:
            raise SmokeError(f"{base_url} answered the smoke cars with {response.status_code}: {response.text[:200]}")
        body = response.json()
    served = np.array([p["mpg"] for p in body["predictions"]])
    if body.get("model_id") != uri.model_id:
        raise SmokeError(f"{base_url} answered with model {str(body.get('model_id'))[:12]}, not {uri.model_id[:12]}")
    expected = model.predict(cars)
    worst = float(np.max(np.abs(served - expected)))
    if worst > TOLERANCE:
        raise SmokeError(f"{base_url} predicts up to {worst:.3g} mpg away from the model file {uri.model_id[:12]}")
    actual = np.array([mpg for _, mpg in SMOKE_CARS])
    off = np.abs(served - actual) / actual
    if np.any(off > PLAUSIBLE):
        car = dict(zip(FEATURE_NAMES, SMOKE_CARS[int(np.argmax(off))][0], strict=True))
        raise SmokeError(f"{base_url} predicts {served[int(np.argmax(off))]:.1f} mpg for {car}: implausible")
    return SmokeResult(uri.model_id, waited, served.tolist())
