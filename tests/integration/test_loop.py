"""The short form of `make loop`: the whole GitOps loop on this machine, each step asserted by the scenario
itself (bench/loop.py says what stands in for GitLab, its CI runner, Kubeflow, S3 and Argo CD)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import MLOPS
from tests.integration.conftest import command_env, sh

pytestmark = pytest.mark.slow
STEPS = ("set up", "1. data ingest", "2. merge-request pipeline", "3. merged", "4. bump merged",
         "5. promotion merged", "6. rollback merged", "7. monitor report")  # fmt: skip


def test_the_loop_runs_end_to_end_from_a_checkout_that_is_not_pristine(root, tiny_dir, tmp_path):
    """`make loop` after the README's own journeys: staging bumped ahead of production (committed), then an
    ingest left uncommitted. The loop runs HEAD, says what it leaves out, and starts from each environment's
    own model."""
    clone = tmp_path / "clone"
    sh("git", "clone", "-q", root, clone, cwd=tmp_path)
    uri = sh(MLOPS, "publish", "--model", tiny_dir, cwd=clone).stdout.strip().splitlines()[-1]
    sh(MLOPS, "gitops", "bump", "--env", "staging", "--model-uri", uri, cwd=clone)
    sh("git", "add", "-A", "k8s", "data/models", cwd=clone)
    sh("git", "commit", "-qm", "staging: a model production does not serve", cwd=clone)
    dvc_file = clone / "data/auto-mpg.csv.dvc"  # an ingest not committed: a data version no remote holds
    dvc_file.write_text(re.sub(r"md5: \w+", "md5: " + "0" * 32, dvc_file.read_text(), count=1))

    installed = (root / ".venv/bin/mlops").read_text().splitlines()[0]
    result = subprocess.run([sys.executable, "-m", "bench.loop", "--repo", clone], cwd=root, env=command_env(),
                            capture_output=True, text=True, timeout=900)  # fmt: skip
    # the CI jobs' `make install` in the loop's copy, with this venv linked in, must not reinstall it from there
    assert (root / ".venv/bin/mlops").read_text().splitlines()[0] == installed
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    head = sh("git", "rev-parse", "--short", "HEAD", cwd=clone).stdout.strip()
    assert f"the loop runs HEAD ({head}); not in it, uncommitted: data/auto-mpg.csv.dvc\n" in result.stdout
    timeline = [line for line in result.stdout.splitlines() if re.match(r"\[\s*[\d.]+ s\] ", line)]
    assert [next(s for s in STEPS if s in line) for line in timeline] == list(STEPS)
    first, last = timeline[0], timeline[-1]
    shipped = re.search(r"production (\w{12})", first)[1]
    assert re.search(r"staging (\w{12})", first)[1] == uri.rstrip("/").rsplit("/", 1)[-1][:12] != shipped
    assert f"production {shipped}" in last, "the rollback put production back on the model it started with"
    assert re.search(r"staging (\w{12})", last)[1] not in (shipped, uri[-13:-1]), "staging serves the new model"
    assert re.search(r"predictions sent all along: \d+, failed: 0", result.stdout)
