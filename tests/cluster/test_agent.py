"""KServe's own agent in front of the predictor, as the pod runs it, posting to the monitor: the monitor's input is
what that agent sends, not events the project wrote itself.

The agent is `github.com/kserve/kserve` cmd/agent of each supported release, built by `make test`. Its arguments
and environment are read from the agent container KServe's pod webhook injected into the predictor's Pod on that
release's control plane (the cluster fixture), with only the addresses moved to loopback: its own port, the
predictor's port (--component-port, SERVING_READINESS_PROBE) and the monitor's URL (--log-url). Then predictions
(V1 and V2), GETs (model metadata, readiness, /metrics) and feedback go through it, and the monitor must have
stored and joined every prediction, counted nothing the agent sent as rejected, and keyed each prediction by the
request id the page sets: the page's nginx sends it as X-Request-Id and Ce-Id, and the agent takes the CloudEvent's
id from Ce-Id (pkg/logger/handler.go getOrCreateID; a new UUID without it). The path is the cluster's: the page's
own nginx.conf in front of the agent, the agent in front of the predictor, feedback through the page."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time

import httpx
import pytest

from infra.http import free_port, stop_process
from infra.nginx import running_nginx
from tests.monitoring.conftest import running_monitor
from tests.serving.conftest import running_server

CARS = [[8, 307.0, 130.0, 3504.0, 12.0, 1970, 1], [4, 97.0, 88.0, 2130.0, 14.5, 1970, 3]]
FEATURES = ["cylinders", "displacement", "horsepower", "weight", "acceleration", "model_year", "origin"]


def injected_agent(cluster) -> dict:
    pod = cluster.created("mpg-staging")["Pod"]
    return next(c for c in pod["spec"]["containers"] if c["name"] == "agent")


def loopback(agent: dict, port: int, predictor_port: int, monitor: str) -> tuple[list[str], dict[str, str]]:
    """The pod's agent arguments and plain environment with the three addresses moved to this machine."""
    args = list(agent["args"])
    args[args.index("--log-url") + 1] = monitor + "/"
    args[args.index("--component-port") + 1] = str(predictor_port)
    env = {e["name"]: e["value"] for e in agent.get("env") or [] if "value" in e}  # not the store's Secret keys
    probe = json.loads(env["SERVING_READINESS_PROBE"])
    probe["httpGet"]["port"] = predictor_port
    env["SERVING_READINESS_PROBE"] = json.dumps(probe)
    return [*args, "--port", str(port)], env


@contextlib.contextmanager
def through_agent(cluster, served_dir, tmp_path, root):
    """page (its nginx.conf) -> KServe's agent (the pod's arguments) -> predictor (the shipped model); the agent
    logs to the monitor, the page's /feedback goes to the monitor. Yields the page's, the agent's (the predictor
    Service's, for the report's scrape) and the monitor's URL."""
    agent = injected_agent(cluster)
    assert agent["args"][agent["args"].index("--log-mode") + 1] == "all"
    binary = cluster.plane.binaries.kserve_agent(cluster.release)
    log = tmp_path / "agent.log"
    with (
        running_server(str(served_dir), tmp_path) as (predictor, _, _),
        running_monitor(f"sqlite:///{tmp_path / 'monitor.db'}") as (monitor, _),
    ):
        port = free_port()
        args, env = loopback(agent, port, int(predictor.rsplit(":", 1)[1]), monitor)
        with open(log, "w") as out:
            process = subprocess.Popen([str(binary), *args], env={**os.environ, **env}, stdout=out, stderr=out)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/v2/models/mpg/ready", timeout=2).status_code == 200:
                        break
                time.sleep(0.2)
            else:
                pytest.fail(f"the agent never answered: {log.read_text()[-2000:]}")
            page_port = free_port()
            with running_nginx(root / "k8s/base/client", base, page_port, monitor):
                yield f"http://127.0.0.1:{page_port}", base, monitor
        finally:
            stop_process(process)


def counts(monitor: str) -> dict[tuple[str, str], float]:
    text = httpx.get(f"{monitor}/metrics").text
    found = re.findall(r'^mpg_monitor_events_total\{kind="(\w+)",result="(\w+)"\} (\S+)$', text, re.M)
    return {(kind, result): float(value) for kind, result, value in found}


def test_kserve_agent_logs_every_prediction_with_the_pages_request_id_and_feedback_joins_it(
    cluster, served_dir, tmp_path, root
):
    with through_agent(cluster, served_dir, tmp_path, root) as (page, _, monitor):
        ids = []
        for index in range(5):  # V1, as the page's script sends it; a caller's id is never the one used
            answer = httpx.post(
                f"{page}/v1/models/mpg:predict", json={"instances": CARS}, headers={"X-Request-Id": f"mine-{index}"}
            )
            assert answer.status_code == 200, answer.text
            ids.append(answer.headers["x-request-id"])
        inputs = [
            {"name": name, "shape": [len(CARS)], "datatype": "FP64", "data": [float(car[i]) for car in CARS]}
            for i, name in enumerate(FEATURES)
        ]
        for _ in range(3):  # V2 JSON
            answer = httpx.post(f"{page}/v2/models/mpg/infer", json={"inputs": inputs})
            assert answer.status_code == 200, answer.text
            ids.append(answer.headers["x-request-id"])
        for path in ("/v2/models/mpg", "/v2/models/mpg/ready"):
            assert httpx.get(page + path).status_code == 200, path  # what the page itself asks for
        deadline = time.monotonic() + 30
        while httpx.get(f"{monitor}/summary").json()["predictions"] < len(ids) * len(CARS):
            assert time.monotonic() < deadline, (httpx.get(f"{monitor}/summary").json(), counts(monitor))
            time.sleep(0.2)
        for request_id in ids:  # the page's feedback for each estimate
            answer = httpx.post(f"{page}/feedback", json={"request_id": request_id, "row": 0, "actual_mpg": 18.0})
            assert answer.status_code == 201, answer.text
        seen = counts(monitor)

    import sqlite3

    with sqlite3.connect(tmp_path / "monitor.db") as db:
        stored = sorted({row[0] for row in db.execute("SELECT request_id FROM predictions")})
        joined = db.execute(
            "SELECT COUNT(*) FROM feedback f JOIN predictions p ON p.request_id = f.request_id AND p.row = f.row"
        ).fetchone()[0]
        rows = db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
    assert len(set(ids)) == len(ids) and not any(i.startswith("mine-") for i in ids), "the page's own ids"
    assert stored == sorted(ids), "every prediction stored under the request id the page set"
    assert rows == len(ids) * len(CARS) and joined == len(ids)
    assert not {key: value for key, value in seen.items() if key[1] == "rejected" and value}, seen


def test_nothing_the_real_agent_sends_is_counted_rejected(cluster, served_dir, tmp_path, root):
    """The agent posts an event for every request and response through it, GETs included (model metadata,
    readiness, a Prometheus scrape of the Service: the report's --metrics-url), and stamps the response event with
    the request's Content-Type, empty for a GET (pkg/logger/handler.go): the monitor counts those as not
    predictions, never as rejected (MpgMonitorRejectingEvents would page)."""
    with through_agent(cluster, served_dir, tmp_path, root) as (page, agent, monitor):
        for path in ("/v2/models/mpg", "/v2/models/mpg/ready", "/metrics", "/v2/health/live"):
            for _ in range(3):
                assert httpx.get(agent + path).status_code == 200, path
        refused = httpx.post(f"{page}/v1/models/mpg:predict", json={"instances": [[4, 1, 1]]})
        assert refused.status_code == 400
        deadline = time.monotonic() + 15
        while sum(counts(monitor).values()) < 2 * 13:  # a request and a response event per call
            assert time.monotonic() < deadline, counts(monitor)
            time.sleep(0.2)
        seen = counts(monitor)
    assert not {key: value for key, value in seen.items() if key[1] == "rejected" and value}, seen
