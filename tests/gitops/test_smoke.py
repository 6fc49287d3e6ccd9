"""`mlops gitops smoke` against the real predictor behind the real nginx, as CI runs it after a bump."""

from __future__ import annotations

import http.server
import itertools
import shutil
import threading

import httpx
import pytest

from core.model_card import read_card
from infra.http import free_port
from infra.nginx import prepare_site, start_nginx
from infra.settings import Settings
from infra.store import open_store
from tests.conftest import one_line_error, run_mlops
from tests.gitops.conftest import REPOSITORY, second_model
from tests.serving.conftest import running_server, wait_until


@pytest.fixture
def behind_nginx(root):
    """Start nginx with the repo's nginx.conf in front of a predictor URL; yields a function."""
    started = []

    def front(predictor_url: str) -> str:
        prefix = prepare_site(root / "k8s" / "base" / "client", predictor_url, free_port())
        port = int((prefix / "conf" / "nginx.conf").read_text().split("listen 127.0.0.1:")[1].split(";")[0])
        process = start_nginx(prefix)
        started.append((process, prefix))
        wait_until(f"http://127.0.0.1:{port}/healthz", process)
        return f"http://127.0.0.1:{port}"

    yield front
    for process, prefix in started:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(prefix, ignore_errors=True)


def store_env(tmp_path, *model_dirs) -> dict[str, str]:
    settings = Settings(store_root=tmp_path / "store", model_repository=REPOSITORY, cache_dir=tmp_path / "cache")
    for model_dir in model_dirs:
        open_store(settings).publish(model_dir, REPOSITORY)
    return {"MLOPS_STORE_ROOT": str(settings.store_root), "MLOPS_CACHE_DIR": str(settings.cache_dir)}


def test_smoke_passes_when_staging_serves_its_overlay_model(tmp_path, root, served_dir, behind_nginx):
    env = store_env(tmp_path, served_dir)
    with running_server(str(served_dir), tmp_path) as (predictor, _, _log):
        url = behind_nginx(predictor)
        result = run_mlops("gitops", "smoke", "--env", "staging", "--url", url, "--timeout", "30", env=env, cwd=root)
    assert result.returncode == 0, result.stderr
    served = read_card(served_dir).id[:12]
    assert f"staging serves model {served}" in result.stdout and "smoke cars:" in result.stdout


def test_smoke_fails_in_one_line_when_another_model_is_served(tmp_path, root, served_dir, behind_nginx):
    other = second_model(served_dir, tmp_path / "other")
    env = store_env(tmp_path, served_dir)
    with running_server(str(other), tmp_path) as (predictor, _, _log):
        url = behind_nginx(predictor)
        args = ("gitops", "smoke", "--env", "staging", "--url", url, "--timeout", "1", "--interval", "0.2")
        line = one_line_error(run_mlops(*args, env=env, cwd=root))
    assert f"did not serve model {read_card(served_dir).id[:12]} 10 times in a row within 1 s" in line
    assert f"last: model {read_card(other).id[:12]}" in line


class RoundRobin(http.server.ThreadingHTTPServer):
    """A stand-in for a Service in the middle of a rolling update: each new connection goes to the next of
    its backends (pods), as kube-proxy spreads connections; some pods still run the old model."""

    def __init__(self, backends: list[str]):
        self.backends, self.turn = backends, itertools.count()
        super().__init__(("127.0.0.1", 0), self.Handler)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            backend = self.server.backends[next(self.server.turn) % len(self.server.backends)]
            body = self.rfile.read(int(self.headers["Content-Length"]))
            answer = httpx.post(backend + self.path, content=body, headers={"Content-Type": "application/json"})
            self.send_response(answer.status_code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        def log_message(self, *args):
            pass


def test_smoke_waits_until_no_old_pod_answers(tmp_path, root, served_dir):
    """One answer from the new model is one pod: with an old pod still in the Service, the check keeps waiting,
    and passes once every pod answers from the new model."""
    old = second_model(served_dir, tmp_path / "old")
    env = store_env(tmp_path, served_dir)
    with running_server(str(served_dir), tmp_path) as (new, _, _), running_server(str(old), tmp_path) as (stale, _, _):
        mid_rollout = RoundRobin([new, stale])
        threading.Thread(target=mid_rollout.serve_forever, daemon=True).start()
        args = ("gitops", "smoke", "--env", "staging", "--timeout", "2", "--interval", "0.1")
        url = f"http://127.0.0.1:{mid_rollout.server_address[1]}"
        line = one_line_error(run_mlops(*args, "--url", url, env=env, cwd=root))
        assert "10 times in a row" in line and f"last: model {read_card(old).id[:12]}" in line
        mid_rollout.backends = [new, new]  # the rollout is done
        assert run_mlops(*args, "--url", url, env=env, cwd=root).returncode == 0
        mid_rollout.shutdown()
