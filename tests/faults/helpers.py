"""Fault injectors shared by the fault tests: a server that dies mid-transfer, a filesystem that fills up.

``DyingProxy`` forwards TCP to a real server (moto's S3) and, once a set number of
bytes has gone one way, closes every connection and stops listening: from the
client's side the server went away in the middle of an upload or a download, and
every retry is refused. ``full_filesystem`` mounts a small tmpfs where the test may
mount (root, as in CI), so writes fail with ENOSPC as on a full disk.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path


class DyingProxy:
    def __init__(self, target: tuple[str, int], upload_limit: int | None = None, download_limit: int | None = None):
        self.target, self.limits = target, {"up": upload_limit, "down": download_limit}
        self.sent = {"up": 0, "down": 0}
        self.dead = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.dead.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, "up"), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, "down"), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, way: str) -> None:
        with contextlib.suppress(OSError):
            while not self.dead.is_set():
                data = source.recv(16384)
                if not data:
                    break
                with self._lock:
                    self.sent[way] += len(data)
                    over = self.limits[way] is not None and self.sent[way] > self.limits[way]
                if over:
                    self.die()
                    return
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def die(self) -> None:
        """The server goes away: open connections reset, new ones refused."""
        self.dead.set()
        self.listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # at once, even while a pump thread waits in recv on it
                with contextlib.suppress(OSError):
                    sock.close()


@contextlib.contextmanager
def full_filesystem(folder: Path, size: str = "1m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``folder`` (skipped where this machine cannot mount one)."""
    import pytest

    folder.mkdir(parents=True, exist_ok=True)
    mount = shutil.which("mount")
    result = subprocess.run(
        [mount or "mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here ({result.stderr.strip()}): the disk-full test needs root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
