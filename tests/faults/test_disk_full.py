"""A full disk under a model being written and under the monitor's database (a small tmpfs, mounted here).

Pass: a one-line error naming the cause, nothing half-written left behind; the monitor
stays up, counts what it could not store, and stores again once there is room, its
database intact.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time

import httpx

from tests.conftest import one_line_error, run_mlops
from tests.faults.helpers import full_filesystem
from tests.monitoring.conftest import binary_event, running_monitor, v1_request, v1_response


def test_a_model_written_to_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, root):
    with full_filesystem(tmp_path / "small", "256k") as small:
        result = run_mlops("train", "--out", small / "model", "--data", root / "data/seed/auto-mpg.csv", cwd=root)
        assert result.returncode == 1
        assert "No space left on device" in one_line_error(result)
        assert list(small.iterdir()) == [], "no partial model directory and no temporary file"


def post_pair(client: httpx.Client, index: int) -> None:
    """One prediction's two events, as KServe's logger posts them (``client`` has the monitor's base URL)."""
    for kind, body in (("request", v1_request()), ("response", v1_response())):
        headers, data = binary_event(f"pair-{index}", kind, body)
        client.post("/", content=data, headers=headers)


def _lost(base: str) -> float:
    lines = httpx.get(f"{base}/metrics").text.splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.startswith("mpg_monitor_events_lost_total"))


def test_the_monitor_on_a_full_disk_counts_its_losses_and_recovers(tmp_path):
    with full_filesystem(tmp_path / "small", "1m") as small:
        url = f"sqlite:///{small / 'monitor.db'}"
        with running_monitor(url) as (base, process), httpx.Client(base_url=base) as client:
            index = 0
            while _lost(base) == 0 and index < 20_000:
                for _ in range(200):
                    post_pair(client, index)
                    index += 1
            assert _lost(base) > 0, "the disk filled up"
            assert process.poll() is None and httpx.get(f"{base}/healthz").status_code == 200
            stored = httpx.get(f"{base}/summary").json()["predictions"]
            subprocess.run(["mount", "-o", "remount,size=16m", str(small)], check=True)
            for extra in range(50):
                post_pair(client, index + extra)
            deadline = time.monotonic() + 10
            while httpx.get(f"{base}/summary").json()["predictions"] < stored + 50 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert httpx.get(f"{base}/summary").json()["predictions"] >= stored + 50, "stores again once there is room"
        with sqlite3.connect(small / "monitor.db") as check:
            assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
