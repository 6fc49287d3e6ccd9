"""A full disk under a model being written and under the monitor's database: a small tmpfs
where the test can mount one, and a file-size limit anywhere (tests/faults/helpers.py).

Pass: a one-line error naming the cause, nothing half-written left behind; the monitor
stays up, counts what it could not store, and stores again once there is room, its
database intact.
"""

from __future__ import annotations

import sqlite3
import time

import httpx
import pytest

from tests.conftest import one_line_error, run_mlops
from tests.faults.helpers import SMALL_DISKS, small_disk
from tests.monitoring.conftest import binary_event, running_monitor, v1_request, v1_response

FULL = {"tmpfs": "No space left on device", "file-size limit": "File too large"}


@pytest.mark.parametrize("kind", SMALL_DISKS)
def test_a_model_written_to_a_full_disk_is_one_line_and_leaves_nothing(kind, tmp_path, root):
    with small_disk(kind, tmp_path / "small", 256 * 1024) as small:
        data = root / "data/seed/auto-mpg.csv"
        result = run_mlops("train", "--out", small.path / "model", "--data", data, cwd=root, prefix=small.prefix)
        assert FULL[kind] in one_line_error(result)
        assert list(small.path.iterdir()) == [], "no partial model directory and no temporary file"


def post_pair(client: httpx.Client, index: int) -> None:
    """One prediction's two events, as KServe's logger posts them (``client`` has the monitor's base URL)."""
    for kind, body in (("request", v1_request()), ("response", v1_response())):
        headers, data = binary_event(f"pair-{index}", kind, body)
        client.post("/", content=data, headers=headers)


def _lost(base: str) -> float:
    lines = httpx.get(f"{base}/metrics").text.splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.startswith("mpg_monitor_events_lost_total"))


@pytest.mark.parametrize("kind", SMALL_DISKS)
def test_the_monitor_on_a_full_disk_counts_its_losses_and_recovers(kind, tmp_path):
    with small_disk(kind, tmp_path / "small", 1024 * 1024) as small:
        url = f"sqlite:///{small.path / 'monitor.db'}"
        with (
            running_monitor(url, prefix=small.prefix) as (base, process),
            httpx.Client(base_url=base) as client,
        ):
            index = 0
            while _lost(base) == 0 and index < 20_000:
                for _ in range(200):
                    post_pair(client, index)
                    index += 1
            assert _lost(base) > 0, "the disk filled up"
            assert process.poll() is None and httpx.get(f"{base}/healthz").status_code == 200
            stored = httpx.get(f"{base}/summary").json()["predictions"]
            small.grow(process.pid)
            for extra in range(50):
                post_pair(client, index + extra)
            deadline = time.monotonic() + 10
            while httpx.get(f"{base}/summary").json()["predictions"] < stored + 50 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert httpx.get(f"{base}/summary").json()["predictions"] >= stored + 50, "stores again once there is room"
        with sqlite3.connect(small.path / "monitor.db") as check:
            assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
