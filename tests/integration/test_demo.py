"""`make demo` in a fresh copy of the repo: busy ports named at once, Ctrl-C a clean stop, and a fresh clone
serves, gates against and reports on what the overlays name, offline, leaving git status clean."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time

import httpx
import pytest

from bench.worktree import copy_worktree
from core.model_card import read_card
from infra.http import free_port
from infra.overlays import read_model_uri
from tests.conftest import MLOPS
from tests.integration.conftest import BIN, command_env, sh
from tests.serving.conftest import wait_until

pytestmark = pytest.mark.slow


def demo(repo, store, path_first=None, through_make=False, **settings) -> subprocess.Popen:
    env = command_env(**{k: str(v) for k, v in settings.items()}, **store)
    if path_first:
        env["PATH"] = f"{path_first}{os.pathsep}{env['PATH']}"
    # `make demo` as the README says it, with this session's venv (already installed: no install step runs)
    command = (
        ["make", "--no-print-directory", "demo", f"VENV={BIN.parent}"] if through_make else ["bash", "scripts/demo.sh"]
    )
    if through_make:
        command += [f"{k}={v}" for k, v in settings.items()]
    return subprocess.Popen(
        command,
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
        process = demo(repo, store, STAGING_PORT=port, PRODUCTION_PORT=free_port())
        out, err = process.communicate(timeout=60)
    assert process.returncode == 1 and time.monotonic() - started < 10
    assert f"port {port} on 127.0.0.1 is in use" in err and "STAGING_PORT=<free port>" in err
    assert "dvc repro" not in out


def test_a_port_held_only_by_time_wait_sockets_is_free_as_the_servers_bind(fresh):
    """Right after a demo stops, its ports hold TIME_WAIT sockets; the servers bind with SO_REUSEADDR, so
    the probe must too. The busy production port is then the first one named."""
    repo, store = fresh
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn and nginx listen
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        waiting = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", waiting))
        accepted, _ = listener.accept()
        accepted.close()  # the server side closes first: its end of the connection enters TIME_WAIT
        client.close()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        process = demo(repo, store, STAGING_PORT=waiting, PRODUCTION_PORT=taken, MONITOR_PORT=free_port())
        _, err = process.communicate(timeout=60)
    assert process.returncode == 1 and f"port {taken} on 127.0.0.1 is in use" in err, err
    assert f"port {waiting} " not in err


def test_equal_ports_are_refused_at_once(fresh):
    repo, store = fresh
    port = free_port()
    process = demo(repo, store, STAGING_PORT=port, PRODUCTION_PORT=free_port(), MONITOR_PORT=port)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1 and "the three must differ" in err


SHIM = """#!/bin/sh
# fault injection: mlops up fails to start; the pipeline run is skipped (as if the gate rejected)
case "$1" in
    up) echo "injected: mlops up cannot start" >&2; exit 1 ;;
    pipeline) exit 3 ;;
esac
exec {mlops} "$@"
"""


def test_mlops_up_failing_to_start_stops_the_demo_and_the_monitor_with_it(fresh, tmp_path):
    repo, store = fresh
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "mlops").write_text(SHIM.format(mlops=MLOPS))
    (shim / "mlops").chmod(0o755)
    monitor = free_port()
    process = demo(repo, store, path_first=shim, STAGING_PORT=free_port(), PRODUCTION_PORT=free_port(),
                   MONITOR_PORT=monitor)  # fmt: skip
    _, err = process.communicate(timeout=300)
    assert process.returncode == 1 and "mlops up stopped; see .mlops/up.log" in err, err
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", monitor)) != 0, "the monitor was stopped, not orphaned"


def test_a_fresh_clone_serves_what_the_overlays_name_offline_and_stays_clean(fresh):
    """The fresh-clone path: `make demo SERVE=0`, then the overlays' model is served, both cards show,
    the gate takes production as its champion, and git status is clean."""
    repo, store = fresh
    process = demo(repo, store, through_make=True, SERVE=0)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    assert "card unavailable" not in out
    staging = read_model_uri(repo, "staging")
    for environment in ("staging", "production"):
        assert f"{environment}: model {read_model_uri(repo, environment).model_id[:12]}" in out
    assert sh("git", "status", "--porcelain", cwd=repo).stdout == "", "the demo leaves git status clean"

    env = {**command_env(**store)}
    gate = subprocess.run([str(MLOPS), "gate", "--candidate", "models/candidate", "--champion", "production"],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert gate.returncode in (0, 3) and "champion" in gate.stdout, gate.stderr
    port = free_port()
    server = subprocess.Popen([str(MLOPS), "serve", "--env", "staging", "--port", str(port)], cwd=repo, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_until(f"http://127.0.0.1:{port}/v2/models/mpg/ready", server)
        metadata = httpx.get(f"http://127.0.0.1:{port}/v2/models/mpg").json()
        assert metadata["versions"] == [staging.model_id]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_demo_serves_both_environments_through_mlops_up_and_stops_cleanly_on_ctrl_c(fresh):
    """Through make, as the README says; SIGINT to the whole process group with no terminal, as a Ctrl-C
    does: the script and everything it started stop cleanly (make itself reports the interrupt)."""
    repo, store = fresh
    staging, production, monitor = free_port(), free_port(), free_port()
    process = demo(repo, store, through_make=True, STAGING_PORT=staging, PRODUCTION_PORT=production,
                   MONITOR_PORT=monitor)  # fmt: skip
    lines: list[str] = []  # the demo's output as it comes: the user reads the hand-off, then presses Ctrl-C
    errors: list[str] = []
    readers = [
        threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True),
        threading.Thread(target=lambda: errors.extend(iter(process.stderr.readline, "")), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{production}/v2/models/mpg/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        car = {"instances": [[4, 140, 90, 2800, 15.5, 1976, 1]]}
        for env, port in (("staging", staging), ("production", production)):
            assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200, "the page"
            answer = httpx.post(f"http://127.0.0.1:{port}/v1/models/mpg:predict", json=car, timeout=5)
            assert answer.status_code == 200, answer.text
            assert answer.json()["model_id"] == read_model_uri(repo, env).model_id, "what main's overlay names"
        feedback = {"request_id": answer.headers["x-request-id"], "actual_mpg": 24.5}
        recorded = httpx.post(f"http://127.0.0.1:{production}/feedback", json=feedback, timeout=30)  # held while logged
        assert recorded.status_code == 201, "the demo's page records feedback: the monitor runs and is logged to"
        status = subprocess.run([str(MLOPS), "gitops", "status"], cwd=repo, env=command_env(**store),
                                capture_output=True, text=True, timeout=60).stdout  # fmt: skip
        assert status.count("mlops up: Synced Healthy") == 2, status
        deadline = time.monotonic() + 120
        while not any("Press Ctrl-C to stop." in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=60)
        for reader in readers:
            reader.join(timeout=10)
    out, err = "".join(lines), "".join(errors)
    assert process.returncode == -signal.SIGINT, (process.returncode, err)  # make re-raises the SIGINT it got
    assert "demo stopped: mlops up (nginx and the predictors) and the monitor are shut down" in out
    assert "Error" not in err and "mlops up stopped" in (repo / ".mlops" / "up.log").read_text(), err
    for environment in ("staging", "production"):
        uri = read_model_uri(repo, environment)
        assert f"{environment}: model {uri.model_id[:12]}" in out, "gitops status shows both environments with cards"
    assert f"holdout RMSE {read_card(repo / 'models' / 'candidate').metrics.holdout.rmse:.3f}" in out
    # the hand-off: runnable in a fresh shell, and true of what the pipeline just did
    assert "  source .venv/bin/activate" in out
    published = json.loads((repo / ".mlops" / "last-run.json").read_text()).get("model_uri") or ""
    if not published:
        assert "The gate kept the candidate out." in out
    elif published.rstrip("/").rsplit("/", 1)[-1] == read_model_uri(repo, "staging").model_id:
        assert "The model just trained is the one staging serves already" in out
    else:
        assert f"mlops gitops bump --env staging --model-uri {published} --branch mlops/bump --commit" in out
    for port in (staging, production, monitor):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"nothing listens on {port} any more"
