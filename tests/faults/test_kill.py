"""kill -9 of the monitor while it writes: its database stays whole and a restarted monitor carries on.

(The other kill -9 tests live with what they kill: publish in tests/unit/test_store.py
and tests/integration/test_store_s3.py, data ingest in tests/monitoring/test_ingest.py,
a bump's push in tests/gitops/test_changes.py.)
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time

import httpx

from monitoring.service import QUEUE
from tests.faults.test_disk_full import post_pair
from tests.monitoring.conftest import running_monitor


def test_a_monitor_killed_mid_write_keeps_a_whole_database_and_a_restart_carries_on(tmp_path):
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    acknowledged: list[int] = []
    with running_monitor(url) as (base, process):
        stop = threading.Event()

        def post() -> None:
            with httpx.Client(base_url=base) as client:
                index = 0
                while not stop.is_set():
                    try:
                        post_pair(client, index)
                    except httpx.HTTPError:
                        return
                    acknowledged.append(index)
                    index += 1

        poster = threading.Thread(target=post)
        poster.start()
        time.sleep(1.5)
        process.send_signal(signal.SIGKILL)
        process.wait()
        stop.set()
        poster.join(10)
    assert len(acknowledged) > 100, "it was writing when it died"
    with sqlite3.connect(tmp_path / "monitor.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = {int(r[0].split("-")[1]) for r in db.execute("SELECT request_id FROM predictions")}
    assert stored <= set(acknowledged), "nothing stored that was not accepted"
    assert len(acknowledged) - len(stored) <= QUEUE // 2, "at most the accepted, uncommitted queue is lost"
    with running_monitor(url) as (base, _), httpx.Client(base_url=base) as client:
        before = httpx.get(f"{base}/summary").json()["predictions"]
        assert before == len(stored)
        for index in range(10):
            post_pair(client, 1_000_000 + index)
        assert httpx.get(f"{base}/summary").json()["predictions"] == before + 10
