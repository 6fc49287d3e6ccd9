"""Scratch directories that a killed process cannot leak.

Work that must appear whole (a published model, a cached download) is assembled in
``<area>/<32 hex>/`` and then renamed into place. Every user of an area holds a shared
``flock`` on ``<area>/.lock`` while its scratch directory exists; whoever gets the lock
exclusively finds nobody at work, so every scratch directory still there was left by
a process that died, and it is removed. Only names this module generates are ever
removed, and only inside the area.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = ".lock"
_GENERATED = re.compile(r"[0-9a-f]{32}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def clean_stale(area: Path, lock) -> int:
    """Remove leftovers of dead processes if nobody else uses the area now; returns how many."""
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # someone is at work: their directory is not stale; clean next time
    try:
        stale = [entry for entry in area.iterdir() if _GENERATED.fullmatch(entry.name)]
        for entry in stale:
            _remove(entry)
        return len(stale)
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def scratch_dir(area: Path) -> Iterator[Path]:
    """A new empty directory in ``area``; removed on exit unless the caller renamed it away."""
    area.mkdir(parents=True, exist_ok=True)
    with open(area / LOCK_FILE, "a") as lock:
        clean_stale(area, lock)
        fcntl.flock(lock, fcntl.LOCK_SH)
        path = area / uuid.uuid4().hex
        path.mkdir()
        try:
            yield path
        finally:
            if path.exists():
                shutil.rmtree(path, ignore_errors=True)
