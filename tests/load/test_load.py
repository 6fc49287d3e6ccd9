"""Load (short form; `python -m bench load --seconds 60` in make bench is the long one): the predictor through
nginx and the monitor's ingest at 64 connections, alone and with malformed requests alongside."""

from __future__ import annotations

import os

import pytest

from bench.load import load, table

SECONDS = int(os.environ.get("LOAD_SECONDS", "4"))


@pytest.mark.slow
def test_good_requests_all_succeed_bad_ones_never_break_anything_and_memory_stays_flat(trained_dir):
    runs = load(trained_dir, SECONDS)
    print("\n" + table(runs))
    assert [(r.target, r.malformed) for r in runs] == [
        ("predictor", False),
        ("predictor", True),
        ("monitor", False),
        ("monitor", True),
    ]
    for run in runs:
        assert run.requests > 100 * SECONDS, run
        assert run.problems() == [], (run, run.problems())
        assert run.log_bytes_per_request < 1, "no log line per request"
    assert all(run.bad_requests > 0 for run in runs if run.malformed), "the malformed streams ran"
