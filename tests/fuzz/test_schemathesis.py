"""Schema-based fuzzing of the running predictor and monitor with schemathesis.

Their OpenAPI descriptions (serving/openapi.py, monitoring/openapi.py, generated from
the feature schema) drive generated requests, valid and invalid; `st run` checks every
answer: no 5xx, invalid bodies refused with a 4xx, valid ones answered (where the
description can express validity), answers matching the description, 405 with Allow
for methods a route does not take. Then the server must still be ready, and its
resident memory must not have grown by more than 10 % over a warmed-up baseline.

make test: ``FUZZ_EXAMPLES`` (default 40) per operation, about 400 requests per service;
make fuzz: 5,000 per operation, which schemathesis turns into about 10,300 requests per
service (its generation saturates on the small operations), and at least 10,000 are
required (``FUZZ_MIN_REQUESTS``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from bench.load import rss_kib
from monitoring.openapi import monitor_openapi
from serving.openapi import predictor_openapi
from tests.monitoring.conftest import running_monitor
from tests.serving.conftest import running_server

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
MIN_REQUESTS = int(os.environ.get("FUZZ_MIN_REQUESTS", "0"))
CONFIG = Path(__file__).with_name("schemathesis.toml")
ST = Path(sys.executable).parent / "st"


def schemathesis(spec: dict, base: str, tmp_path: Path, examples: int, seed: int) -> tuple[int, str]:
    path = tmp_path / f"openapi-{seed}.json"
    path.write_text(json.dumps(spec))
    command = [str(ST), "--config-file", str(CONFIG), "run", str(path), "--url", base]
    command += ["--max-examples", str(examples), "--seed", str(seed), "--no-color", "--generation-database", "none"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    generated = re.search(r"(\d+) generated", result.stdout)
    assert result.returncode == 0, result.stdout[-6000:]
    return int(generated[1]), result.stdout


def fuzz(spec: dict, base: str, pid: int, ready_url: str, tmp_path: Path) -> None:
    schemathesis(spec, base, tmp_path, 10, seed=1)  # warm-up: imports, caches, allocator arenas
    before = rss_kib(pid)
    generated, output = schemathesis(spec, base, tmp_path, EXAMPLES, seed=2)
    after = rss_kib(pid)
    print(f"{spec['info']['title']}: {generated} requests, RSS {before} -> {after} KiB")
    assert generated >= max(MIN_REQUESTS, 1), output[-2000:]
    assert httpx.get(ready_url).status_code == 200, "still ready after the fuzzing"
    assert after <= before * 1.10, f"resident memory grew from {before} to {after} KiB"


@pytest.mark.slow
def test_the_predictor_survives_schema_based_fuzzing(trained_dir, tmp_path):
    with running_server(str(trained_dir), tmp_path) as (base, process, _log):
        fuzz(predictor_openapi(), base, process.pid, f"{base}/v2/models/mpg/ready", tmp_path)


@pytest.mark.slow
def test_the_monitor_survives_schema_based_fuzzing(tmp_path):
    # no feedback hold: thousands of generated feedbacks name ids nobody served (the hold is tested in
    # tests/monitoring/test_service.py); everything else runs as deployed
    # the rate limit off: this fuzzes the parsers (the limit has its own test, tests/monitoring/test_service.py)
    with running_monitor(f"sqlite:///{tmp_path / 'monitor.db'}", "--feedback-hold", "0", "--feedback-rate", "0") as (
        base,
        process,
    ):
        fuzz(monitor_openapi(), base, process.pid, f"{base}/readyz", tmp_path)
