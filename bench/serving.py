"""Serving benchmark: this predictor against a generic scikit-learn server and a trivial model.

All three run in the same kserve model server on loopback, one process each, and
take the same load from ``wrk`` (16 connections): single-instance requests, then
100-instance batches. The reference does what a generic scikit-learn server does
(a DataFrame built from the request, ``model.predict`` on it); the trivial model
returns constants, the framework's ceiling.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from kserve import Model

from bench.figures import Figure, Section
from core.errors import MlopsError
from core.features import FEATURE_NAMES

ROLES = ("predictor", "reference", "trivial")
WRK_SCRIPT = 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [==[{body}]==]\n'
# Appended to every script: count 5xx answers per thread and print their sum (wrk lumps 4xx and 5xx).
COUNT_5XX = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) server_errors = 0 end
function response(status, headers, body) if status >= 500 then server_errors = server_errors + 1 end end
function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("server_errors") end
  io.write(string.format("server_errors: %d\\n", total))
end
"""


class BenchError(MlopsError):
    """A benchmark could not run (wrk missing, a server not ready, failed requests)."""


class ReferenceModel(Model):
    """What a generic scikit-learn server does: DataFrame from the request, then ``predict``."""

    def __init__(self, name: str, model_dir: str):
        super().__init__(name)
        self.model_dir = model_dir

    def load(self) -> bool:
        import joblib

        self._model = joblib.load(Path(self.model_dir) / "model.joblib")
        self.ready = True
        return True

    def predict(self, payload, headers=None):
        import pandas as pd

        frame = pd.DataFrame(payload["instances"], columns=list(FEATURE_NAMES))
        return {"predictions": self._model.predict(frame).tolist()}


class TrivialModel(Model):
    """Returns a constant per instance: what the framework costs with no model at all."""

    def load(self) -> bool:
        self.ready = True
        return True

    def predict(self, payload, headers=None):
        return {"predictions": [0.0] * len(payload["instances"])}


def _server_main(role: str, model_dir: str, port: int) -> None:
    """Entry point of one benchmark server process."""
    from infra.settings import Settings
    from infra.store import open_store
    from serving.predictor import MpgModel
    from serving.server import serve

    model = {
        "predictor": lambda: MpgModel("mpg", model_dir, open_store(Settings())),
        "reference": lambda: ReferenceModel("mpg", model_dir),
        "trivial": lambda: TrivialModel("mpg"),
    }[role]()
    serve([model], host="127.0.0.1", port=port)


def _wait_ready(url: str, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise BenchError(f"{url} not ready after {timeout} s")


@contextlib.contextmanager
def running(command: list[str], ready_url: str, log: Path | None = None) -> Iterator[subprocess.Popen]:
    """``command`` started (its output to ``log``, or discarded), ready at ``ready_url``, stopped after the block."""
    with open(log or os.devnull, "w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        _wait_ready(ready_url)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


def _seconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise BenchError(f"cannot read wrk latency {text!r}")
    return float(match[1]) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[match[2]]


def pinned(cpu: int) -> list[str]:
    """Pin to one CPU when there are two or more: load generator and server then do not
    take each other's core, which otherwise makes run-to-run noise larger than the differences."""
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and (os.cpu_count() or 1) >= 2 else []


def run_wrk(
    url: str,
    body: str,
    seconds: int,
    connections: int = 16,
    script: str | None = None,
    errors_expected: bool = False,
    cpu: int = 0,
) -> dict[str, float]:
    """Requests, requests/s, p50 and p99 (ms), non-2xx and 5xx answers from one wrk run.

    ``script``: a wrk Lua script of one's own instead of POSTing ``body``. Unless
    ``errors_expected``, any non-2xx answer is a ``BenchError`` (and 5xx are not counted apart).
    """
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        # the 5xx count costs wrk a Lua call per answer: only where answers may fail on purpose
        lua.write((script or WRK_SCRIPT.format(body=body)) + (COUNT_5XX if errors_expected else ""))
    command = [*pinned(cpu), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", lua.name, url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    Path(lua.name).unlink()
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors and not errors_expected:
        raise BenchError(f"{errors.group(1)} failed requests against {url}:\n{output}")
    return {
        "requests": float(re.search(r"(\d+) requests in", output).group(1)),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50_ms": _seconds(re.search(r"^\s+50%\s+(\S+)$", output, re.MULTILINE).group(1)) * 1e3,
        "p99_ms": _seconds(re.search(r"^\s+99%\s+(\S+)$", output, re.MULTILINE).group(1)) * 1e3,
        "non_2xx": float(errors.group(1)) if errors else 0.0,
        "server_errors": float(re.search(r"server_errors: (\d+)", output).group(1)) if errors_expected else 0.0,
    }


def bodies(model_dir: Path) -> dict[str, str]:
    """The two loads: one car per request, and 100 cars per request (rows inside the training ranges)."""
    card = json.loads((Path(model_dir) / "model.json").read_text())
    low = np.array([f["min"] for f in card["features"]])
    high = np.array([f["max"] for f in card["features"]])
    rng = np.random.default_rng(0)
    rows = np.round(low + rng.random((100, 7)) * (high - low), 1)
    rows[:, [0, 5, 6]] = [4, 1976, 1]
    return {
        "1 instance": json.dumps({"instances": rows[:1].tolist()}),
        "100 instances": json.dumps({"instances": rows.tolist()}),
    }


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bound, then released for the caller)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def benchmark(model_dir: Path, seconds: int = 10, rounds: int = 3) -> dict[tuple[str, str], dict[str, float]]:
    """Start the three servers, load each in turn for ``rounds`` rounds, stop them.

    Results by (load, role): the median over rounds of each figure (rounds interleave
    the servers, so a slow moment of the machine does not favour one of them)."""
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed (Debian: apt-get install wrk)")
    servers = {}
    try:
        for role in ROLES:
            port = free_port()
            code = f"from bench.serving import _server_main; _server_main({role!r}, {str(model_dir)!r}, {port})"
            servers[role] = (
                port,
                subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            )
            _wait_ready(f"http://127.0.0.1:{port}/v2/models/mpg/ready")
        runs = {}
        for load, body in bodies(model_dir).items():
            for _ in range(rounds):
                for role, (port, _) in servers.items():
                    url = f"http://127.0.0.1:{port}/v1/models/mpg:predict"
                    run_wrk(url, body, 1)  # warm-up
                    runs.setdefault((load, role), []).append(run_wrk(url, body, seconds))
        return {key: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for key, rs in runs.items()}
    finally:
        for _, process in servers.values():
            process.terminate()
            process.wait(timeout=30)


def table(results: dict[tuple[str, str], dict[str, float]]) -> str:
    """Requests/s, p50, p99 per load and server, and this predictor's ratios to the other two."""
    lines = [f"{'load':<14} {'server':<10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}"]
    for load in dict.fromkeys(load for load, _ in results):
        for role in ROLES:
            r = results[(load, role)]
            lines.append(f"{load:<14} {role:<10} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}")
        ours = results[(load, "predictor")]["rps"]
        lines.append(
            f"{load:<14} ratios: predictor/reference {ours / results[(load, 'reference')]['rps']:.2f}x, "
            f"predictor/trivial {ours / results[(load, 'trivial')]['rps']:.0%}"
        )
    return "\n".join(lines)


def time_split(model_dir: Path, repeat: int = 20_000) -> dict[str, float]:
    """Microseconds per single-instance V1 request spent in each part of the predictor's own work, in process.

    The same calls the server makes, in its order: JSON decode, V1 validation, the
    compiled model (with L/100 km), range flags and the response dict, JSON encode.
    """
    import timeit

    import orjson

    from core.features import to_l_per_100km
    from infra.settings import Settings
    from infra.store import open_store
    from serving.predictor import MpgModel
    from serving.schema import parse_v1

    model = MpgModel("mpg", str(model_dir), open_store(Settings()))
    if not model.load():
        raise BenchError(f"cannot load {model_dir}: {model.load_error}")
    raw = bodies(model_dir)["1 instance"].encode()
    payload = orjson.loads(raw)
    matrix = parse_v1(payload)
    answer = model.predict(payload)
    parts = {
        "JSON decode": lambda: orjson.loads(raw),
        "V1 validation": lambda: parse_v1(payload),
        "model (compiled) + L/100 km": lambda: to_l_per_100km(model._predict(matrix)),
        "predict() as a whole": lambda: model.predict(payload),
        "JSON encode": lambda: orjson.dumps(answer),
    }
    micros = {name: min(timeit.repeat(call, number=repeat, repeat=3)) / repeat * 1e6 for name, call in parts.items()}
    micros["range flags + response dict"] = (
        micros["predict() as a whole"] - micros["V1 validation"] - micros["model (compiled) + L/100 km"]
    )
    return micros


def section(model_dir: Path, seconds: int = 5, rounds: int = 3) -> Section:
    """The three servers at both loads: this predictor's throughput and p99 against the trivial and generic ones."""
    results = benchmark(model_dir, seconds, rounds)
    split = time_split(model_dir)
    framework = 1e6 / results[("1 instance", "trivial")]["rps"]
    served = 1e6 / results[("1 instance", "predictor")]["rps"]
    lines = [table(results), "", "time per single-instance V1 request (us):"]
    lines.append(f"  {'framework (1 / trivial req/s, under load)':<44} {framework:7.1f}")
    lines.append(f"  {'predictor (1 / predictor req/s, under load)':<44} {served:7.1f}")
    lines.append(f"  {'difference under load':<44} {served - framework:7.1f}")
    lines.append("  the predictor's own work, in process (warm caches):")
    lines += [f"    {name:<42} {micros:7.1f}" for name, micros in split.items()]
    own = split["predict() as a whole"]
    figures = [Figure("predictor's own work per request", own, "us", "framework per request", framework)]
    return Section("Serving", "\n".join(lines), figures + serving_figures(results))


def serving_figures(results: dict[tuple[str, str], dict[str, float]]) -> list[Figure]:
    """Per load: the predictor's req/s and p99 against the trivial model, its req/s against the generic server."""
    figures = []
    for load in dict.fromkeys(load for load, _ in results):
        ours, trivial, reference = (results[(load, role)] for role in ("predictor", "trivial", "reference"))
        figures += [
            Figure(f"{load}: predictor req/s", ours["rps"], "req/s", "trivial kserve model", trivial["rps"], ">= 0.85"),
            Figure(f"{load}: predictor p99", ours["p99_ms"], "ms", "trivial kserve model", trivial["p99_ms"], "<= 1.2"),
            Figure(f"{load}: predictor req/s", ours["rps"], "req/s", "generic sklearn server", reference["rps"]),
        ]
    return figures
