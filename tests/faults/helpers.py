"""Fault injectors shared by the fault tests: a server that dies mid-transfer, a filesystem that fills up.

``DyingProxy`` forwards TCP to a real server (moto's S3) and, once a set number of
bytes has gone one way, closes every connection and stops listening: from the
client's side the server went away in the middle of an upload or a download, and
every retry is refused. ``small_disk`` gives a folder where writes stop past a size,
two ways: a small tmpfs where the test may mount one (root, as in CI), so writes fail
with ENOSPC as on a full disk; and, anywhere, the command run under a file-size limit
(``prlimit --fsize``), so a file cannot grow past it (EFBIG; Python ignores SIGXFSZ),
the closest an unprivileged test gets to a full disk. The tests run both where they can.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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


@dataclass
class SmallDisk:
    """``path`` fills up after about ``size`` bytes for commands started with ``prefix``; ``grow`` makes room."""

    path: Path
    prefix: list[str]
    grow: Callable[[int], None]  # the pid of the command that should get room


SMALL_DISKS = ("tmpfs", "file-size limit")


@contextlib.contextmanager
def small_disk(kind: str, folder: Path, size: int) -> Iterator[SmallDisk]:
    """A folder where writes fail past ``size`` bytes, by ``kind`` (one of ``SMALL_DISKS``).

    tmpfs is skipped, with the reason, where this machine cannot mount one (not root);
    the file-size limit works for any user, so the test still runs there.
    """
    import pytest

    folder.mkdir(parents=True, exist_ok=True)
    if kind == "file-size limit":
        # soft limit only: the same user may raise it again (grow), no privilege needed
        yield SmallDisk(folder, ["prlimit", f"--fsize={size}:unlimited"], lambda pid: _unlimit(pid))
        return
    result = subprocess.run(
        [shutil.which("mount") or "mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()}); the file-size-limit variant runs instead")
    try:
        yield SmallDisk(folder, [], lambda pid: _remount(folder, 16 * size))
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _unlimit(pid: int) -> None:
    subprocess.run(["prlimit", "--pid", str(pid), "--fsize=unlimited:unlimited"], check=True)


def _remount(folder: Path, size: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(folder)], check=True)
