"""Serving benchmark: this predictor against MLServer, a generic scikit-learn predictor and a trivial model.

Each runs on loopback, one process pinned to CPU 1, and takes the same load from ``wrk`` on CPU 0
(16 connections): single-instance requests, then 100-instance batches, in V1 and V2 (MLServer: V2
only). The predictor is ``mlops serve`` from the serving-only install; the reference does what KServe's
sklearnserver does per request, and the trivial model returns constants (the framework's ceiling), both
in this project's server; MLServer runs from a virtualenv of its own (``bench/envs.py``). Every server
must answer the model's own predictions before it is timed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
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
from infra.http import free_port

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
    """What KServe's sklearnserver does per request (``sklearnserver/model.py``): the request to an array
    with ``get_predict_input``, scikit-learn's ``predict``, the answer with ``get_predict_response``."""

    def __init__(self, name: str, model_dir: str):
        super().__init__(name)
        self.model_dir = model_dir

    def load(self) -> bool:
        import joblib

        self._model = joblib.load(Path(self.model_dir) / "model.joblib")
        self.ready = True
        return True

    def predict(self, payload, headers=None):
        from kserve.utils.utils import get_predict_input, get_predict_response

        return get_predict_response(payload, self._model.predict(get_predict_input(payload)), self.name)


class TrivialModel(Model):
    """Returns a constant per instance: what the framework costs with no model at all."""

    def load(self) -> bool:
        self.ready = True
        return True

    def predict(self, payload, headers=None):
        if isinstance(payload, dict):  # V1
            return {"predictions": [0.0] * len(payload["instances"])}
        from kserve.utils.utils import get_predict_response

        return get_predict_response(payload, np.zeros(payload.inputs[0].shape[0]), self.name)


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
    """Requests, requests/s, p50 and p99 (ms), non-2xx and 5xx answers and socket errors from one wrk run.

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
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if errors and not errors_expected:
        raise BenchError(f"{errors.group(1)} failed requests against {url}:\n{output}")
    p50 = re.search(r"^\s+50%\s+(\S+)$", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)$", output, re.MULTILINE)
    if not (p50 and p99):  # wrk prints no latency distribution when no request completed in the run
        raise BenchError(f"no request to {url} completed in {seconds} s (a starved or stuck server):\n{output}")
    return {
        "requests": float(re.search(r"(\d+) requests in", output).group(1)),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50_ms": _seconds(p50.group(1)) * 1e3,
        "p99_ms": _seconds(p99.group(1)) * 1e3,
        "non_2xx": float(errors.group(1)) if errors else 0.0,
        "socket_errors": float(sum(map(int, sockets.groups()))) if sockets else 0.0,
        "server_errors": float(re.search(r"server_errors: (\d+)", output).group(1)) if errors_expected else 0.0,
    }


PATHS = {"V1": "/v1/models/mpg:predict", "V2": "/v2/models/mpg/infer"}
READY = "/v2/models/mpg/ready"
#: The servers, and the protocols each is measured on (MLServer speaks only V2).
SERVERS = {
    "predictor": ("V1", "V2"),
    "reference": ("V1", "V2"),
    "trivial": ("V1", "V2"),
    "mlserver": ("V2",),
}
NAMES = {
    "predictor": "this predictor (mlops serve)",
    "reference": "generic sklearn predictor (sklearnserver's predict, this server)",
    "trivial": "trivial constant model (this server)",
    "mlserver": "MLServer 1.7.1 + mlserver-sklearn",
}
#: Every server must answer these predictions (max absolute difference) before it is timed.
SAME_PREDICTION = 1e-6


def rows(model_dir: Path) -> dict[str, np.ndarray]:
    """The two loads: one car per request, and 100 cars per request (rows inside the training ranges)."""
    card = json.loads((Path(model_dir) / "model.json").read_text())
    low = np.array([f["min"] for f in card["features"]])
    high = np.array([f["max"] for f in card["features"]])
    rng = np.random.default_rng(0)
    cars = np.round(low + rng.random((100, 7)) * (high - low), 1)
    cars[:, [0, 5, 6]] = [4, 1976, 1]
    return {"1 instance": cars[:1], "100 instances": cars}


def body(cars: np.ndarray, protocol: str) -> str:
    """The request for ``cars``: V1 ``instances``, or V2 as Triton's and MLServer's clients send it
    (one FP64 tensor of shape [n, 7])."""
    if protocol == "V1":
        return json.dumps({"instances": cars.tolist()})
    tensor = {"name": "input-0", "shape": list(cars.shape), "datatype": "FP64", "data": cars.ravel().tolist()}
    return json.dumps({"inputs": [tensor]})


def bodies(model_dir: Path, protocol: str = "V1") -> dict[str, str]:
    """Each load's request body in ``protocol``."""
    return {load: body(cars, protocol) for load, cars in rows(model_dir).items()}


def predictions(answer: dict) -> list[float]:
    """The mpg predictions of any server's answer: V1 ``predictions`` (numbers, or this predictor's
    objects), V2 the output named ``mpg`` or else the first output."""
    if "predictions" in answer:
        return [p["mpg"] if isinstance(p, dict) else p for p in answer["predictions"]]
    outputs = answer["outputs"]
    return next((o for o in outputs if o["name"] == "mpg"), outputs[0])["data"]


#: MLServer's settings (besides its ports): one worker (parallel inference off), debug and access log off, no
#: metrics server, on loopback.
MLSERVER_SETTINGS = {"debug": False, "parallel_workers": 0, "host": "127.0.0.1", "metrics_endpoint": None}


def mlserver_repository(model_dir: Path, folder: Path, port: int) -> Path:
    """An MLServer model repository serving ``model_dir/model.joblib`` as ``mpg`` on ``port``
    (``MLSERVER_SETTINGS``)."""
    settings = {**MLSERVER_SETTINGS, "http_port": port, "grpc_port": free_port()}
    model = {
        "name": "mpg",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(Path(model_dir, "model.joblib").resolve())},
    }
    (folder / "mpg").mkdir(parents=True, exist_ok=True)
    (folder / "settings.json").write_text(json.dumps(settings))
    (folder / "mpg" / "model-settings.json").write_text(json.dumps(model))
    return folder


def server_command(role: str, model_dir: Path, port: int, envs: dict[str, Path], work: Path) -> list[str]:
    """How ``role`` starts: the predictor as ``mlops serve`` from the serving-only install, MLServer from
    its own, the two kserve models of this module from the development install; all on CPU 1."""
    if role == "predictor":
        mlops = envs["serving"].parent / "mlops"
        return [*pinned(1), str(mlops), "serve", "--model-uri", str(model_dir), "--port", str(port)]
    if role == "mlserver":
        folder = mlserver_repository(model_dir, work / f"mlserver-{port}", port)
        return [*pinned(1), str(envs["mlserver"].parent / "mlserver"), "start", str(folder)]
    code = f"from bench.serving import _server_main; _server_main({role!r}, {str(model_dir)!r}, {port})"
    return [*pinned(1), sys.executable, "-c", code]


def check_same_predictions(model_dir: Path, ports: dict[str, int]) -> None:
    """Every server but the trivial one answers the model's own predictions (to ``SAME_PREDICTION``)."""
    import httpx
    import joblib

    cars = rows(model_dir)["100 instances"]
    expected = np.asarray(joblib.load(Path(model_dir) / "model.joblib").predict(cars), dtype=float)
    for role, port in ports.items():
        if role == "trivial":
            continue
        for protocol in SERVERS[role]:
            url = f"http://127.0.0.1:{port}{PATHS[protocol]}"
            answer = httpx.post(url, content=body(cars, protocol), headers={"Content-Type": "application/json"})
            if answer.status_code != 200:
                raise BenchError(f"{role} {protocol}: HTTP {answer.status_code} {answer.text[:300]}")
            got = np.asarray(predictions(answer.json()), dtype=float).ravel()
            difference = np.max(np.abs(got - expected)) if got.shape == expected.shape else np.inf
            if difference > SAME_PREDICTION:
                raise BenchError(f"{role} {protocol} answers other predictions (max difference {difference:.3g})")


def time_to_ready(command: list[str], port: int, repeat: int = 3) -> float:
    """Median seconds from process start to ``READY`` answering 200, polled every 10 ms."""
    import httpx

    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://127.0.0.1:{port}{READY}", timeout=1).status_code == 200:
                        break
                if process.poll() is not None or time.perf_counter() - started > 120:
                    raise BenchError(f"{command[-1]!r} did not become ready (exit {process.returncode})")
                time.sleep(0.01)
            times.append(time.perf_counter() - started)
        finally:
            process.terminate()
            process.wait(timeout=30)
    return statistics.median(times)


def benchmark(
    model_dir: Path, envs: dict[str, Path], work: Path, seconds: int = 10, rounds: int = 3
) -> dict[tuple[str, str], dict[str, float]]:
    """Start the servers, check their predictions, load each in turn for ``rounds`` rounds, stop them.

    Results by (load, server), a load being "<protocol>, <instances>": the median over rounds of each
    figure (rounds interleave the servers, so a slow moment of the machine does not favour one of them)."""
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed (Debian: apt-get install wrk)")
    servers: dict[str, tuple[int, subprocess.Popen]] = {}
    try:
        for role in SERVERS:
            port = free_port()
            command = server_command(role, model_dir, port, envs, work)
            servers[role] = (port, subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            _wait_ready(f"http://127.0.0.1:{port}{READY}")
        check_same_predictions(model_dir, {role: port for role, (port, _) in servers.items()})
        runs = {}
        for size, cars in rows(model_dir).items():
            for protocol in PATHS:
                load, payload = f"{protocol}, {size}", body(cars, protocol)
                for _ in range(rounds):
                    for role, (port, _) in servers.items():
                        if protocol in SERVERS[role]:
                            url = f"http://127.0.0.1:{port}{PATHS[protocol]}"
                            run_wrk(url, payload, 1)  # warm-up
                            runs.setdefault((load, role), []).append(run_wrk(url, payload, seconds))
        return {key: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for key, rs in runs.items()}
    finally:
        for _, process in servers.values():
            process.terminate()
            process.wait(timeout=30)


def table(results: dict[tuple[str, str], dict[str, float]]) -> str:
    """Requests/s, p50, p99 per load and server, and this predictor's ratios to the others."""
    lines = [f"{'load':<20} {'server':<10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}"]
    for load in dict.fromkeys(load for load, _ in results):
        measured = [role for role in SERVERS if (load, role) in results]
        for role in measured:
            r = results[(load, role)]
            lines.append(f"{load:<20} {role:<10} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}")
        ours = results[(load, "predictor")]
        ratios = ", ".join(f"/{role} {ours['rps'] / results[(load, role)]['rps']:.2f}x" for role in measured[1:])
        p99 = ours["p99_ms"] / results[(load, "trivial")]["p99_ms"]
        lines.append(f"{load:<20} predictor req/s {ratios}; p99/trivial {p99:.2f}x")
    return "\n".join(lines)


def time_split(model_dir: Path, repeat: int = 20_000) -> dict[str, dict[str, float]]:
    """Microseconds per single-instance request spent in each part of the predictor's own work, in process,
    per protocol: the same calls the server makes, in its order (decode and validation, the compiled model
    with L/100 km, range flags and the answer, JSON encode)."""
    import timeit

    import orjson

    from core.features import to_l_per_100km
    from infra.settings import Settings
    from infra.store import open_store
    from serving.predictor import MpgModel
    from serving.schema import decode_v2, parse_v1, parse_v2

    model = MpgModel("mpg", str(model_dir), open_store(Settings()))
    if not model.load():
        raise BenchError(f"cannot load {model_dir}: {model.load_error}")
    cars = rows(model_dir)["1 instance"]
    v1, v2 = body(cars, "V1").encode(), body(cars, "V2").encode()
    payload, decoded = orjson.loads(v1), decode_v2(v2, None)
    matrix, answers = parse_v1(payload), {"V1": model.predict(payload), "V2": model.infer_json(decoded)}
    model_part = ("model (compiled) + L/100 km", lambda: to_l_per_100km(model._predict(matrix)))
    parts = {
        "V1": {
            "JSON decode": lambda: orjson.loads(v1),
            "validation (parse_v1)": lambda: parse_v1(payload),
            model_part[0]: model_part[1],
            "predict() as a whole": lambda: model.predict(payload),
            "JSON encode": lambda: orjson.dumps(answers["V1"]),
        },
        "V2": {
            "JSON decode + V2 checks (decode_v2)": lambda: decode_v2(v2, None),
            "validation (parse_v2)": lambda: parse_v2([(i.name, i.shape, i.datatype, i.data) for i in decoded.inputs]),
            model_part[0]: model_part[1],
            "infer_json() as a whole": lambda: model.infer_json(decoded),
            "JSON encode": lambda: orjson.dumps(answers["V2"]),
        },
    }
    split = {}
    for protocol, calls in parts.items():
        micros = {
            name: min(timeit.repeat(call, number=repeat, repeat=3)) / repeat * 1e6 for name, call in calls.items()
        }
        whole = next(name for name in calls if "as a whole" in name)
        validation = next(value for name, value in micros.items() if name.startswith("validation"))
        micros["range flags + answer"] = micros[whole] - validation - micros[model_part[0]]
        split[protocol] = micros
    return split


def cold_start(model_dir: Path, envs: dict[str, Path], work: Path) -> dict[str, float]:
    """Seconds from process start to ready: the predictor from the serving-only install and from the full
    (platform) one, the trivial kserve model, MLServer."""
    starts = {
        "predictor, serving-only install": ("predictor", envs),
        "predictor, full (platform) install": ("predictor", {**envs, "serving": envs["platform"]}),
        "trivial kserve model": ("trivial", envs),
        "MLServer + mlserver-sklearn": ("mlserver", envs),
    }
    seconds = {}
    for name, (role, role_envs) in starts.items():
        port = free_port()
        seconds[name] = time_to_ready(server_command(role, model_dir, port, role_envs, work), port)
    return seconds


def section(model_dir: Path, seconds: int = 5, rounds: int = 3) -> Section:
    """Every server at both loads and protocols, the predictor's split per request, cold starts and the
    size of each install."""
    from bench import envs as installs
    from infra.settings import project_root

    with tempfile.TemporaryDirectory(prefix="mlops-bench-serve-") as temporary:
        work = Path(temporary)
        source = installs.source_copy(project_root(), work / "source")
        envs = {kind: installs.build(kind, source, work / kind) for kind in installs.KINDS}
        sizes = {kind: installs.size(work / kind) / 2**20 for kind in installs.KINDS}
        results = benchmark(model_dir, envs, work, seconds, rounds)
        ready = cold_start(model_dir, envs, work)
    split = time_split(model_dir)
    lines = [table(results), "", f"MLServer settings: {json.dumps(MLSERVER_SETTINGS)}"]
    for protocol, micros in split.items():
        framework = 1e6 / results[(f"{protocol}, 1 instance", "trivial")]["rps"]
        served = 1e6 / results[(f"{protocol}, 1 instance", "predictor")]["rps"]
        lines += ["", f"time per single-instance {protocol} request (us):"]
        lines.append(f"  {'framework (1 / trivial req/s, under load)':<44} {framework:7.1f}")
        lines.append(f"  {'predictor (1 / predictor req/s, under load)':<44} {served:7.1f}")
        lines.append(f"  {'difference under load':<44} {served - framework:7.1f}")
        lines.append("  the predictor's own work, in process (warm caches):")
        lines += [f"    {name:<42} {value:7.1f}" for name, value in micros.items()]
    lines += ["", "seconds from process start to ready (median of 3):"]
    lines += [f"  {name:<44} {value:7.2f}" for name, value in ready.items()]
    lines += ["", "installed size (MiB, bytecode compiled):"]
    lines += [f"  {kind:<44} {value:7.0f}" for kind, value in sizes.items()]
    return Section("Serving", "\n".join(lines), serving_figures(results, split, ready, sizes))


def serving_figures(
    results: dict[tuple[str, str], dict[str, float]],
    split: dict[str, dict[str, float]] | None = None,
    ready: dict[str, float] | None = None,
    sizes: dict[str, float] | None = None,
) -> list[Figure]:
    """Per load: the predictor against the trivial model (req/s, p99) and the peers (req/s); V2 against V1;
    the predictor's own work; time to ready and install sizes against their baselines."""
    figures = []
    for load in dict.fromkeys(load for load, _ in results):
        ours = results[(load, "predictor")]
        trivial = results[(load, "trivial")]
        figures += [
            Figure(f"{load}: predictor req/s", ours["rps"], "req/s", NAMES["trivial"], trivial["rps"]),
            Figure(f"{load}: predictor p99", ours["p99_ms"], "ms", NAMES["trivial"], trivial["p99_ms"], "<= 1.5"),
        ]
        figures += [
            Figure(f"{load}: predictor req/s", ours["rps"], "req/s", NAMES[role], results[(load, role)]["rps"], ">= 5")
            for role in ("reference", "mlserver")
            if (load, role) in results
        ]
    for size in ("1 instance", "100 instances"):
        if (f"V2, {size}", "predictor") in results:
            v1, v2 = (results[(f"{protocol}, {size}", "predictor")]["rps"] for protocol in ("V1", "V2"))
            figures.append(Figure(f"{size}: predictor V2 req/s", v2, "req/s", "the same, V1", v1, ">= 0.9"))
    for protocol, micros in (split or {}).items():
        whole = next(value for name, value in micros.items() if "as a whole" in name)
        figures.append(Figure(f"predictor's own work per {protocol} request, in process", whole, "us"))
    if ready:
        trivial = ready["trivial kserve model"]
        figures += [
            Figure(f"time to ready: {name}", value, "s", "trivial kserve model", trivial, target)
            for name, value in ready.items()
            if name != "trivial kserve model"
            for target in ["<= 2" if name.startswith("predictor") else ""]
        ]
    if sizes:
        figures += [
            Figure("install: serving-only", sizes["serving"], "MiB", "full (platform)", sizes["platform"], "<= 0.5"),
            Figure("install: MLServer + mlserver-sklearn", sizes["mlserver"], "MiB"),
        ]
    return figures


PY_SPY = "py-spy==0.4.3"


def profile(model_dir: Path, seconds: int = 10, protocol: str = "V1", top: int = 30) -> str:
    """Where the predictor's time goes under load: py-spy (``record --native``, run with uvx) samples the
    running ``mlops serve`` while wrk sends single-car requests; the share of samples per frame, inclusive
    (the frame or what it called) and as the leaf, for the frames of at least 1 %."""
    import collections
    import threading

    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed (Debian: apt-get install wrk)")
    port = free_port()
    command = [*pinned(1), str(Path(sys.executable).parent / "mlops"), "serve", "--model-uri", str(model_dir)]
    payload = body(rows(model_dir)["1 instance"], protocol)
    with (
        tempfile.TemporaryDirectory(prefix="mlops-profile-") as work,
        running([*command, "--port", str(port)], f"http://127.0.0.1:{port}{READY}") as server,
    ):
        url = f"http://127.0.0.1:{port}{PATHS[protocol]}"
        load = threading.Thread(target=run_wrk, args=(url, payload, seconds + 4))
        load.start()
        time.sleep(2)
        raw = Path(work) / "profile.txt"
        record = ["record", "--pid", str(server.pid), "--duration", str(seconds), "--rate", "250", "--native"]
        uvx = Path(sys.executable).parent / "uvx"
        result = subprocess.run([str(uvx), "--from", PY_SPY, "py-spy", *record, "--format", "raw", "-o", str(raw)],
                                capture_output=True, text=True)  # fmt: skip
        load.join()
        if result.returncode != 0 or not raw.exists():
            raise BenchError(f"py-spy failed (it needs ptrace: root, or kernel.yama.ptrace_scope 0): {result.stderr}")
        inclusive, leaf, total = collections.Counter(), collections.Counter(), 0
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = [re.sub(r" \((?:.*/)?(site-packages|python3\.\d+)/", " (", f) for f in stack.split(";")]
            total += int(count)
            leaf[frames[-1]] += int(count)
            for frame in set(frames):
                inclusive[frame] += int(count)
    lines = [f"py-spy {PY_SPY.split('==')[1]} --native, {seconds} s of single-car {protocol} requests, {total} samples"]
    for title, counter in (("inclusive", inclusive), ("leaf", leaf)):
        lines.append(f"  {title}:")
        shown = [(frame, n) for frame, n in counter.most_common() if n / total >= 0.01 and n / total < 0.999]
        lines += [f"    {n / total:6.1%}  {frame[:110]}" for frame, n in shown[:top]]
    return "\n".join(lines)
