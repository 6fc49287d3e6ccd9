"""The short form of `make loop`: the whole GitOps loop on this machine, each step asserted by the scenario
itself (bench/loop.py says what stands in for GitLab, its CI runner, Kubeflow, S3 and Argo CD)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.integration.conftest import command_env

pytestmark = pytest.mark.slow
STEPS = ("set up", "1. data ingest", "2. merge-request pipeline", "3. merged", "4. bump merged",
         "5. promotion merged", "6. rollback merged", "7. monitor report")  # fmt: skip


def test_the_loop_runs_end_to_end_and_every_prediction_along_it_is_answered(root):
    result = subprocess.run([sys.executable, "-m", "bench.loop"], cwd=root, env=command_env(), capture_output=True,
                            text=True, timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    timeline = [line for line in result.stdout.splitlines() if re.match(r"\[\s*[\d.]+ s\] ", line)]
    assert [next(s for s in STEPS if s in line) for line in timeline] == list(STEPS)
    first, last = timeline[0], timeline[-1]
    shipped = re.search(r"production (\w{12})", first)[1]
    assert f"production {shipped}" in last, "the rollback put production back on the model it started with"
    assert re.search(r"staging (\w{12})", last)[1] != shipped, "staging serves the model the loop trained"
    assert re.search(r"predictions sent all along: \d+, failed: 0", result.stdout)
