"""The real `mlops monitor serve` on loopback, and the CloudEvents KServe's logger sends."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from bench.worktree import copy_worktree
from core.features import FEATURE_NAMES
from core.model_card import md5_file
from infra.http import free_port
from monitoring import db
from monitoring.events import Half
from monitoring.ingest import PROVENANCE, QUARANTINE, dvc_file, read_version
from tests.conftest import MLOPS, SEED_DATA, run_mlops
from tests.integration.conftest import command_env
from training.params import DataParams

MODEL = "7" * 64
DATA_FILE = Path(DataParams().path)  # params.yaml's data.path (the default the committed params.yaml keeps)
DVC_FILE = dvc_file(DATA_FILE)
CAR = [4, 140, 90, 2800, 15.5, 1976, 1]


def binary_event(event_id: str, kind: str, body) -> tuple[dict[str, str], bytes]:
    """Headers and body of a binary-mode event, as KServe's agent posts them."""
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-type": f"org.kubeflow.serving.inference.{kind}",
        "ce-source": "http://localhost:9081/",
        "ce-time": "2026-11-20T10:00:00Z",
        "ce-inferenceservicename": "mpg",
        "ce-namespace": "mpg-staging",
        "ce-component": "predictor",
        "content-type": "application/json",
    }
    return headers, body if isinstance(body, bytes) else orjson.dumps(body)


def v1_request(cars=(CAR,)) -> dict:
    return {"instances": [list(c) for c in cars]}


def v1_response(n: int = 1, model: str = MODEL) -> dict:
    return {"model_id": model, "predictions": [{"mpg": 23.4, "l_per_100km": 10.05, "outside_training_range": []}] * n}


@contextlib.contextmanager
def running_monitor(db_url: str, *args: str, prefix=(), env: dict[str, str] | None = None):
    """``mlops monitor serve`` on a free port until the block ends: (base URL, process).

    ``prefix``: a command that runs it (``prlimit ...``); ``env``: variables added to this environment."""
    port = free_port()
    process = subprocess.Popen(
        [*prefix, str(MLOPS), "monitor", "serve", "--db", db_url, "--port", str(port), *args],
        env={**os.environ, **(env or {})},
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"monitor exited: {process.stderr.read()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        yield base, process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def monitor(request, tmp_path_factory):
    """One monitor per backend for a test module: tests use their own event ids and compare counts before/after."""
    sqlite = f"sqlite:///{tmp_path_factory.mktemp('monitor') / 'monitor.db'}"
    url = sqlite if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    if request.param == "postgresql":
        from monitoring import db

        engine = db.connect(url)
        with engine.begin() as connection:  # the session's server is shared: start empty
            for table in (db.predictions, db.feedback, db.halves, db.conflicts):
                connection.execute(table.delete())
    with running_monitor(url, "--feedback-rate", "0") as (base, _):  # many tests share it; the limit has its own
        yield base


def post_event(base: str, event_id: str, kind: str, body) -> httpx.Response:
    headers, content = binary_event(event_id, kind, body)
    return httpx.post(f"{base}/", content=content, headers=headers)


def sample(dataset, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rows = dataset.frame.sample(n, replace=True, random_state=seed)
    return rows[list(FEATURE_NAMES)].to_numpy(dtype=float), rows["mpg"].to_numpy()


def served(
    engine, model, card, cars: np.ndarray, prefix: str, actual: np.ndarray | None = None, time0=1.7e9, client=""
):
    """Store ``cars`` as the monitor would have (request + response per car), with feedback if ``actual``
    (reported from ``client``'s address)."""
    predicted = model.predict(cars)
    low, high = np.array([f.min for f in card.features]), np.array([f.max for f in card.features])
    halves = []
    for index, (car, mpg) in enumerate(zip(cars, predicted, strict=True)):
        outside = [FEATURE_NAMES[j] for j in np.flatnonzero((car < low) | (car > high))]
        event_id = f"{prefix}-{index}"
        halves.append(Half(event_id, "request", "mpg", "mpg-staging", time0 + index, [car.tolist()]))
        halves.append(
            Half(
                event_id,
                "response",
                "mpg",
                "mpg-staging",
                time0 + index,
                [[float(mpg), float(235.2 / mpg), outside]],
                card.id,
            )
        )
    with engine.begin() as connection:
        db.store_halves(connection, halves, time0)
        for index, value in enumerate(actual if actual is not None else []):
            db.add_feedback(connection, f"{prefix}-{index}", 0, float(value), client)


@pytest.fixture
def project(tmp_path, root) -> Path:
    """A clone of the project with the tracked data checked out (the state after `mlops data pull`)."""
    clone = copy_worktree(root, tmp_path / "repo")
    shutil.copy(SEED_DATA, clone / DATA_FILE)
    assert md5_file(clone / DATA_FILE) == read_version(clone, DATA_FILE).md5
    return clone


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file of the data, its .dvc file, its provenance and quarantine, the DVC remote and the cache
    (what an ingest may touch)."""
    files = [p for p in (root / DATA_FILE, root / DVC_FILE, root / PROVENANCE, root / QUARANTINE) if p.is_file()]
    for folder in (root / "data" / "dvc-remote", root / ".dvc" / "cache"):
        files += sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def ingest(project: Path, *args, env=None):
    return run_mlops("data", "ingest", *args, cwd=project, env=env or command_env())
