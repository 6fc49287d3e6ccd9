"""`python -m bench profile`: py-spy samples the running predictor under wrk and names where its time goes."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_the_profile_attributes_the_predictors_time_to_its_own_frames(tiny_dir, root):
    command = [sys.executable, "-m", "bench", "profile", "--model", str(tiny_dir), "--seconds", "2"]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    share: dict[str, float] = {}
    for pct, frame in re.findall(r"^\s+([\d.]+)%\s+(\S+)", result.stdout, re.MULTILINE):
        share[frame] = max(share.get(frame, 0.0), float(pct))  # a function's lines, inclusive: the largest
    assert re.match(r"py-spy [\d.]+ --native, 2 s of single-car V1 requests, \d+ samples", result.stdout)
    assert share.get("Handlers.predict", 0) > 5, "the handler is where a request's time is spent"
    assert "  inclusive:" in result.stdout and "  leaf:" in result.stdout
