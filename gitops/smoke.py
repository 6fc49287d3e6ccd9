"""Is an environment serving the model its overlay names, and serving it right?

CI runs this after a bump is merged: send a smoke set of known cars until ``CONSECUTIVE``
answers in a row come from the overlay's model id, each on a new connection (a rolling
update leaves old pods answering for a while), and equal what the model file itself
predicts (fetched from the store and verified); then check they are plausible for those
cars. Behind a proxy that keeps its upstream connections (the page's nginx does), answers
in a row may come from fewer pods than they look: the count is a guard, not a census.
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
CONSECUTIVE = 10  # answers in a row from the new model before an environment counts as switched
PLAUSIBLE = 0.35  # and be within 35 % of what the car really did


class SmokeError(MlopsError):
    """The environment does not serve the model its overlay names, or serves it wrong."""


@dataclass(frozen=True)
class SmokeResult:
    model_id: str
    waited_seconds: float
    predictions: list[float]


def _answer(client, base_url: str, cars: np.ndarray) -> tuple[str | None, np.ndarray | None, str]:
    """(model id, mpg predictions, what was seen) of one predict call on a fresh connection."""
    import httpx

    try:
        response = client.post(f"{base_url}/v1/models/mpg:predict", json={"instances": cars.tolist()}, timeout=10)
    except httpx.HTTPError as e:
        return None, None, f"{type(e).__name__}: {e}"
    seen = f"{response.status_code} {response.text[:120]}"
    try:
        body = response.json()
        return body.get("model_id"), np.array([p["mpg"] for p in body["predictions"]], dtype=float), seen
    except (ValueError, KeyError, TypeError):
        return None, None, seen


def smoke(
    base_url: str,
    uri: StoreURI,
    model,
    timeout: float = 600,
    interval: float = 5.0,
    consecutive: int = CONSECUTIVE,
) -> SmokeResult:
    """Wait until ``consecutive`` answers in a row come from ``uri``'s model and equal what ``model`` (its file)
    predicts for the smoke cars; then check they are plausible. During a rollout old pods answer too: one
    answer from the new model proves only that one pod has it, so any other answer starts the count again."""
    import httpx

    base_url = base_url.rstrip("/")
    cars = np.array([car for car, _ in SMOKE_CARS], dtype=float)
    expected = model.predict(cars)
    started, streak, seen = time.monotonic(), 0, "nothing"
    with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0)) as client:  # a new connection each time
        while streak < consecutive:
            model_id, served, seen = _answer(client, base_url, cars)
            if model_id == uri.model_id and served is not None:
                worst = float(np.max(np.abs(served - expected)))
                if worst > TOLERANCE:
                    raise SmokeError(
                        f"{base_url} predicts up to {worst:.3g} mpg away from the model file {uri.model_id[:12]}"
                    )
                streak += 1
                continue  # the next answer at once: consecutive means back to back
            streak = 0
            if model_id is not None:
                seen = f"model {str(model_id)[:12]}"
            if time.monotonic() - started > timeout:
                raise SmokeError(
                    f"{base_url} did not serve model {uri.model_id[:12]} {consecutive} times in a row within "
                    f"{timeout:.0f} s (last: {seen})"
                )
            time.sleep(interval)
    waited = time.monotonic() - started
    actual = np.array([mpg for _, mpg in SMOKE_CARS])
    off = np.abs(served - actual) / actual
    if np.any(off > PLAUSIBLE):
        car = dict(zip(FEATURE_NAMES, SMOKE_CARS[int(np.argmax(off))][0], strict=True))
        raise SmokeError(f"{base_url} predicts {served[int(np.argmax(off))]:.1f} mpg for {car}: implausible")
    return SmokeResult(uri.model_id, waited, served.tolist())


def wait_for_rollout(kubectl, namespace: str, uri: StoreURI, timeout: float, interval: float):
    """Until every replica in ``namespace`` runs ``uri``'s model and no old one is left (gitops.rollout); a new
    model whose pods fail is a SmokeError at once, naming why."""
    from gitops.rollout import environment_health

    started = time.monotonic()
    while True:
        health = environment_health(kubectl, namespace, str(uri))
        if health.status == "Healthy":
            return health
        if health.status in ("Degraded", "Missing") or time.monotonic() - started > timeout:
            raise SmokeError(f"{namespace} does not roll out model {uri.model_id[:12]}: {health}")
        time.sleep(interval)
