"""Monitor benchmarks: can it keep up with the predictor, and what does a report cost.

Ingest. The baseline, measured in the same run: the predictor's single-instance
request rate (`mlops serve`, wrk, 16 connections, as `python -m bench serve`). Each
prediction is two CloudEvents, so the monitor keeps up when its events/s reach
2 x that rate. wrk then posts binary-mode CloudEvents (a request and its response,
unique ids, 16 connections) to `mlops monitor serve` on SQLite and on PostgreSQL
(fsync on): events/s, p50/p99 of the 202 (stored and committed). Last, the predictor
with `--log-url` under the same load: requests answered against predictions stored
and events dropped.

Report. 100,000 predictions stored straight into SQLite, then `mlops monitor report`
to JSON and to HTML, timed as a user runs them (a fresh process each).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np

from bench.figures import Figure, Section
from bench.serving import WRK_SCRIPT, BenchError, bodies, run_wrk, running
from core.features import FEATURE_NAMES, MPG_L100KM_FACTOR
from core.model_card import read_card
from infra.http import free_port

MLOPS = Path(sys.executable).parent / "mlops"
PACE_MS = 5  # wrk waits this long before each next request of a connection: 16 connections, ~2,900 req/s
EVENTS_LUA = """
local n = 0
local request_body = [==[{request}]==]
local response_body = [==[{response}]==]
request = function()
  n = n + 1
  local kind = (n % 2 == 1) and "request" or "response"
  local headers = {{
    ["ce-specversion"] = "1.0",
    ["ce-id"] = "{prefix}-" .. math.floor((n + 1) / 2),
    ["ce-type"] = "org.kubeflow.serving.inference." .. kind,
    ["ce-source"] = "http://bench/",
    ["ce-inferenceservicename"] = "mpg",
    ["ce-namespace"] = "bench",
    ["content-type"] = "application/json",
  }}
  return wrk.format("POST", "/", headers, kind == "request" and request_body or response_body)
end
"""


@contextlib.contextmanager
def monitor(db_url: str) -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running([str(MLOPS), "monitor", "serve", "--db", db_url, "--port", str(port)], f"{base}/readyz"):
        yield base


@contextlib.contextmanager
def predictor(model_dir: Path, log_url: str | None = None) -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [str(MLOPS), "serve", "--model-uri", str(model_dir), "--port", str(port)]
    with running([*command, *(["--log-url", log_url] if log_url else [])], f"{base}/v2/models/mpg/ready"):
        yield base


def events_script(model_dir: Path) -> str:
    response = {
        "model_id": read_card(model_dir).id,
        "predictions": [{"mpg": 25.0, "l_per_100km": round(MPG_L100KM_FACTOR / 25.0, 4), "outside_training_range": []}],
    }
    request = bodies(model_dir)["1 instance"]
    return EVENTS_LUA.format(request=request, response=json.dumps(response), prefix=uuid.uuid4().hex)


def _metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def ingest(model_dir: Path, databases: dict[str, str], seconds: int) -> dict[str, dict[str, float]]:
    """The predictor's req/s (baseline), the monitor's events/s per database, and the logging run."""
    results = {}
    body = bodies(model_dir)["1 instance"]
    with predictor(model_dir) as base:
        url = f"{base}/v1/models/mpg:predict"
        run_wrk(url, body, 1)
        results["predictor (baseline)"] = run_wrk(url, body, seconds)
    for name, db_url in databases.items():
        with monitor(db_url) as base:
            run_wrk(f"{base}/", "", 1, script=events_script(model_dir))  # warm-up, ids of its own
            results[f"monitor, {name}"] = run_wrk(f"{base}/", "", seconds, script=events_script(model_dir))
    with monitor(databases["SQLite"].replace(".db", "-logged.db")) as monitor_base:
        with predictor(model_dir, f"{monitor_base}/") as base:
            # paced at about half the baseline: flat out, wrk, predictor and monitor share two cores here
            paced = WRK_SCRIPT.format(body=body) + f"function delay() return {PACE_MS} end\n"
            figures = run_wrk(f"{base}/v1/models/mpg:predict", body, seconds, script=paced)
            time.sleep(2)  # the payload log drains
            dropped = _metric(httpx.get(f"{base}/metrics").text, "mpg_payload_log_dropped_total")
            answered = _metric(httpx.get(f"{base}/metrics").text, 'mpg_http_requests_total{route="predict"')
        stored = httpx.get(f"{monitor_base}/summary").json()["predictions"]
    results["predictor --log-url"] = {**figures, "answered": answered, "stored": stored, "dropped": dropped}
    return results


def ingest_table(results: dict[str, dict[str, float]]) -> str:
    baseline = results["predictor (baseline)"]["rps"]
    lines = [f"{'server':<24} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}  ratio"]
    for name, r in results.items():
        ratio = "" if name.startswith("predictor") else f"{r['rps'] / (2 * baseline):.2f}x (2 x predictor req/s)"
        lines.append(f"{name:<24} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}  {ratio}")
    logged = results["predictor --log-url"]
    lines.append(
        f"predictor --log-url, paced ({logged['rps'] / baseline:.0%} of the baseline): "
        f"{logged['answered']:.0f} predictions answered, {logged['stored']:.0f} stored, "
        f"{logged['dropped']:.0f} events dropped"
    )
    return "\n".join(lines)


def fill(db_url: str, model_dir: Path, rows: int) -> None:
    """``rows`` predictions of the model (cars drawn inside its training ranges), a tenth with feedback."""
    from monitoring import db

    card = read_card(model_dir)
    low, high = np.array([f.min for f in card.features]), np.array([f.max for f in card.features])
    rng = np.random.default_rng(0)
    cars = np.round(low + rng.random((rows, len(FEATURE_NAMES))) * (high - low), 1)
    mpg = rng.uniform(10, 45, rows)
    now = time.time()
    records = [
        {
            "request_id": f"bench-{i}",
            "row": 0,
            "time": now - rows + i,
            "model_id": card.id,
            "service": "mpg",
            "namespace": "bench",
            **dict(zip(FEATURE_NAMES, map(float, cars[i]), strict=True)),
            "mpg": float(mpg[i]),
            "l_per_100km": float(MPG_L100KM_FACTOR / mpg[i]),
            "outside_training_range": "",
        }
        for i in range(rows)
    ]
    engine = db.connect(db_url)
    with engine.begin() as connection:
        connection.execute(db.predictions.insert(), records)
        connection.execute(
            db.feedback.insert(),
            [
                {"request_id": f"bench-{i}", "row": 0, "actual_mpg": float(mpg[i] + 1), "reported": now}
                for i in range(0, rows, 10)
            ],
        )


def report(model_dir: Path, rows: int, folder: Path) -> dict[str, float]:
    """Seconds for `mlops monitor report` over ``rows`` stored predictions, to JSON and to HTML."""
    db_url = f"sqlite:///{folder / 'report.db'}"
    fill(db_url, model_dir, rows)
    seconds = {}
    for suffix in ("json", "html"):
        started = time.perf_counter()
        command = [str(MLOPS), "monitor", "report", "--db", db_url, "--model", str(model_dir)]
        result = subprocess.run([*command, "--out", folder / f"r.{suffix}"], capture_output=True, text=True)
        seconds[suffix] = time.perf_counter() - started
        if result.returncode not in (0, 4):
            raise BenchError(f"mlops monitor report failed: {result.stderr.strip()}")
    return seconds


def section(model_dir: Path, seconds: int = 5, rows: int = 100_000) -> Section:
    """Ingest on SQLite and PostgreSQL (when installed) against 2 x the predictor's rate; the report's cost."""
    from bench.local_postgres import LocalPostgresError, postgres_cluster

    lines = []
    with tempfile.TemporaryDirectory(prefix="mpg-bench-monitor-") as folder, contextlib.ExitStack() as stack:
        databases = {"SQLite": f"sqlite:///{Path(folder) / 'ingest.db'}"}
        try:
            databases["PostgreSQL"] = stack.enter_context(postgres_cluster(durable=True))
        except LocalPostgresError as e:
            lines.append(f"PostgreSQL skipped: {e}")
        results = ingest(model_dir, databases, seconds)
        seconds_by_format = report(model_dir, rows, Path(folder))
    lines.append(ingest_table(results))
    lines.append(
        f"report over {rows} predictions: JSON {seconds_by_format['json']:.2f} s, "
        f"HTML {seconds_by_format['html']:.2f} s (target <= 10 s)"
    )
    events_needed = 2 * results["predictor (baseline)"]["rps"]
    figures = [
        Figure(f"ingest, {name}", results[f"monitor, {name}"]["rps"], "events/s", "2 x predictor req/s", events_needed)
        for name in databases
    ]
    figures += [
        Figure(f"report over {rows:,} predictions, {fmt.upper()}", spent, "s", target="<= 10 s")
        for fmt, spent in seconds_by_format.items()
    ]
    return Section("Monitor", "\n".join(lines), figures)
