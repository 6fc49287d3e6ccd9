"""`make demo`'s script in a fresh copy of the repo: busy ports named at once, Ctrl-C a clean stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import httpx
import pytest

from core.model_card import read_card
from core.overlays import read_model_uri
from serving.bench import free_port
from tests.integration.conftest import command_env
from training.bench import copy_worktree

pytestmark = pytest.mark.slow


def demo(repo, store, **settings) -> subprocess.Popen:
    env = command_env(**{k: str(v) for k, v in settings.items()}, **store)
    return subprocess.Popen(
        ["bash", "scripts/demo.sh"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: Ctrl-C reaches the script and what it started
    )


@pytest.fixture
def fresh(tmp_path, root):
    repo = copy_worktree(root, tmp_path / "repo")
    store = {"MLOPS_STORE_ROOT": str(tmp_path / "store"), "MLOPS_CACHE_DIR": str(tmp_path / "cache")}
    return repo, store


def test_a_busy_port_is_named_before_any_work(fresh):
    repo, store = fresh
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        process = demo(repo, store, PREDICTOR_PORT=port, CLIENT_PORT=free_port())
        out, err = process.communicate(timeout=60)
    assert process.returncode == 1 and time.monotonic() - started < 10
    assert f"port {port} on 127.0.0.1 is in use" in err and "PREDICTOR_PORT=<free port>" in err
    assert "dvc repro" not in out


def test_the_demo_serves_the_page_shows_what_runs_where_and_stops_cleanly_on_ctrl_c(fresh):
    repo, store = fresh
    predictor, client, monitor = free_port(), free_port(), free_port()
    process = demo(repo, store, PREDICTOR_PORT=predictor, CLIENT_PORT=client, MONITOR_PORT=monitor)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{client}/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        answer = httpx.post(
            f"http://127.0.0.1:{client}/v1/models/mpg:predict", json={"instances": [[4, 140, 90, 2800, 15.5, 1976, 1]]}
        )
        assert answer.status_code == 200, answer.text
        feedback = {"request_id": answer.headers["x-request-id"], "actual_mpg": 24.5}
        for _ in range(50):  # the payload log is on its way to the monitor
            recorded = httpx.post(f"http://127.0.0.1:{client}/feedback", json=feedback)
            if recorded.status_code != 404:
                break
            time.sleep(0.1)
        assert recorded.status_code == 201, "the demo's page records feedback: the monitor runs and is logged to"
    finally:
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "demo stopped: the predictor, the monitor and the client page are shut down" in out
    for environment in ("staging", "production"):
        uri = read_model_uri(repo, environment)
        assert f"{environment}: model {uri.model_id[:12]}" in out, "gitops status shows both environments with cards"
    assert f"holdout RMSE {read_card(repo / 'models' / 'candidate').metrics.holdout.rmse:.3f}" in out
    for port in (predictor, client, monitor):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"nothing listens on {port} any more"
