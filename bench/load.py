"""Load tests: the predictor through nginx and the monitor's ingest, alone and with malformed traffic alongside.

Each run starts the real processes on loopback (the predictor with its log in a file,
the monitor on SQLite, nginx with the repo's nginx.conf in front of both), warms
them up, then drives one target with wrk at 64 connections for the given time, with or
without a second wrk stream of malformed requests (4 connections). Reported per run:
requests/s, p50/p99, non-2xx answers to the good stream (must be 0), 5xx answers to
the malformed stream (must be 0), the server's resident memory before and after (growth
must stay under 10 %), and the bytes its log grew per request.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.figures import Figure, Section
from bench.monitor import events_script
from bench.serving import WRK_SCRIPT, BenchError, bodies, run_wrk, running
from infra.http import free_port

MLOPS = Path(sys.executable).parent / "mlops"
CONNECTIONS, BAD_CONNECTIONS = 64, 4
BAD_PREDICTION = json.dumps({"instances": [[4, 140, 90, -2800, 15.5, 1976, 1], ["four"]]})
BAD_EVENT_HEADERS = 'wrk.headers["ce-specversion"] = "1.0"\nwrk.headers["ce-type"] = "nonsense"\n'


@dataclass
class LoadRun:
    target: str
    malformed: bool
    seconds: int
    requests: float
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: float
    bad_requests: float
    bad_5xx: float
    rss_before_kib: int
    rss_after_kib: int
    log_bytes_per_request: float

    @property
    def rss_growth(self) -> float:
        return self.rss_after_kib / self.rss_before_kib - 1

    def problems(self) -> list[str]:
        found = []
        if self.non_2xx:
            found.append(f"{self.non_2xx:.0f} good requests not answered 2xx")
        if self.bad_5xx:
            found.append(f"{self.bad_5xx:.0f} malformed requests answered 5xx")
        if self.rss_growth >= 0.10:
            found.append(f"resident memory grew {self.rss_growth:.0%}")
        return found


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)[1])


@contextlib.contextmanager
def site(model_dir: Path, folder: Path) -> Iterator[dict]:
    """Monitor, predictor logging to it, nginx in front of both: URLs, pids and log files."""
    from infra.nginx import running_nginx

    client_dir = Path(__file__).resolve().parents[1] / "k8s" / "base" / "client"
    ports = {name: free_port() for name in ("monitor", "predictor", "nginx")}
    monitor, predictor = (f"http://127.0.0.1:{ports[n]}" for n in ("monitor", "predictor"))
    logs = {name: folder / f"{name}.log" for name in ("monitor", "predictor")}
    db = f"sqlite:///{folder / 'monitor.db'}"
    monitor_command = [str(MLOPS), "monitor", "serve", "--db", db, "--port", str(ports["monitor"])]
    predictor_command = [str(MLOPS), "serve", "--model-uri", str(model_dir), "--port", str(ports["predictor"])]
    predictor_command += ["--log-url", f"{monitor}/"]
    with (
        running(monitor_command, f"{monitor}/readyz", logs["monitor"]) as monitor_process,
        running(predictor_command, f"{predictor}/v2/models/mpg/ready", logs["predictor"]) as predictor_process,
        running_nginx(client_dir, predictor, ports["nginx"], monitor),
    ):
        yield {
            "predictor": f"http://127.0.0.1:{ports['nginx']}/v1/models/mpg:predict",
            "monitor": f"{monitor}/",
            "pids": {"predictor": predictor_process.pid, "monitor": monitor_process.pid},
            "logs": logs,
        }


def one_run(where: dict, target: str, model_dir: Path, seconds: int, malformed: bool) -> LoadRun:
    url, pid, log = where[target], where["pids"][target], where["logs"][target]

    def good() -> str | None:  # the monitor's events get ids of their own per wrk run
        return None if target == "predictor" else events_script(model_dir)

    body = bodies(model_dir)["1 instance"]
    run_wrk(url, body, 2, connections=CONNECTIONS, script=good())  # warm-up at the same concurrency
    rss_before, log_before = rss_kib(pid), log.stat().st_size
    bad: dict = {}
    if malformed:
        bad_script = (
            WRK_SCRIPT.format(body=BAD_PREDICTION)
            if target == "predictor"
            else WRK_SCRIPT.format(body=body) + BAD_EVENT_HEADERS + f'wrk.headers["ce-id"] = "{uuid.uuid4().hex}"\n'
        )
        thread = threading.Thread(
            target=lambda: bad.update(
                run_wrk(url, "", seconds, BAD_CONNECTIONS, script=bad_script, errors_expected=True, cpu=1)
            )
        )
        thread.start()
    figures = run_wrk(url, body, seconds, connections=CONNECTIONS, script=good())
    if malformed:
        thread.join()
        if bad.get("non_2xx", 0) != bad.get("requests"):
            raise BenchError(f"a malformed request was accepted: {bad}")
    time.sleep(0.5)
    return LoadRun(
        target=target,
        malformed=malformed,
        seconds=seconds,
        requests=figures["requests"],
        rps=figures["rps"],
        p50_ms=figures["p50_ms"],
        p99_ms=figures["p99_ms"],
        non_2xx=figures["non_2xx"],
        bad_requests=bad.get("requests", 0.0),
        bad_5xx=bad.get("server_errors", 0.0),
        rss_before_kib=rss_before,
        rss_after_kib=rss_kib(pid),
        log_bytes_per_request=(log.stat().st_size - log_before) / (figures["requests"] + bad.get("requests", 0.0)),
    )


def load(model_dir: Path, seconds: int) -> list[LoadRun]:
    """The four runs: predictor through nginx and monitor ingest, each alone and with malformed requests."""
    with tempfile.TemporaryDirectory(prefix="mpg-load-") as folder, site(model_dir, Path(folder)) as where:
        return [
            one_run(where, target, model_dir, seconds, malformed)
            for target in ("predictor", "monitor")
            for malformed in (False, True)
        ]


def table(runs: list[LoadRun]) -> str:
    lines = [
        f"{'target':<24} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'non-2xx':>8} {'bad':>7} {'bad 5xx':>7} "
        f"{'RSS KiB before -> after':>24} {'log B/req':>9}"
    ]
    for run in runs:
        name = {"predictor": "predictor via nginx", "monitor": "monitor ingest"}[run.target]
        name += " +bad" if run.malformed else ""
        rss = f"{run.rss_before_kib} -> {run.rss_after_kib} ({run.rss_growth:+.1%})"
        lines.append(
            f"{name:<24} {run.rps:>8.0f} {run.p50_ms:>7.2f} {run.p99_ms:>7.2f} {run.non_2xx:>8.0f} "
            f"{run.bad_requests:>7.0f} {run.bad_5xx:>7.0f} {rss:>24} {run.log_bytes_per_request:>9.3f}"
        )
    return "\n".join(lines)


def section(model_dir: Path, seconds: int) -> Section:
    """The four runs; each malformed run against its run alone; problems (non-2xx, 5xx, memory) listed."""
    runs = load(model_dir, seconds)
    figures = []
    for target in ("predictor", "monitor"):
        alone, bad = (next(r for r in runs if r.target == target and r.malformed is m) for m in (False, True))
        name = {"predictor": "predictor via nginx", "monitor": "monitor ingest"}[target]
        figures += [
            Figure(f"{name}, 64 connections", alone.rps, "req/s"),
            Figure(f"{name}, 64 connections, p99", alone.p99_ms, "ms"),
            Figure(f"{name} + malformed stream", bad.rps, "req/s", "the same alone", alone.rps),
            Figure(f"{name} + malformed stream, p99", bad.p99_ms, "ms", "the same alone", alone.p99_ms),
            Figure(f"{name}: RSS after", bad.rss_after_kib / 1024, "MiB", "RSS before", alone.rss_before_kib / 1024),
            Figure(f"{name}: good requests not 2xx", alone.non_2xx + bad.non_2xx, "", target="0"),
            Figure(f"{name}: malformed requests answered 5xx", bad.bad_5xx, "", target="0"),
        ]
    problems = [f"{run.target}{' +bad' if run.malformed else ''}: {p}" for run in runs for p in run.problems()]
    return Section(f"Load ({seconds} s per run)", table(runs), figures, problems)
