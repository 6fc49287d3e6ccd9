"""A throwaway PostgreSQL cluster on loopback, for the tests and the monitor benchmark.

From Debian's `postgresql` package (`scripts/system-deps.sh` installs it). initdb refuses
to run as root, so as root the cluster runs as the `postgres` user the package creates;
its data lives in a fresh temporary folder (made here) that is removed afterwards.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from core.errors import MlopsError
from infra.http import free_port


class LocalPostgresError(MlopsError):
    """PostgreSQL is not installed here."""


def _binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise LocalPostgresError(f"{name} not found: install Debian's postgresql package (scripts/system-deps.sh test)")
    return found


def _as_owner(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextlib.contextmanager
def postgres_cluster(durable: bool = False) -> Iterator[str]:
    """Start a cluster; yields a SQLAlchemy URL of an empty database on it; stops and removes it after.

    ``durable``: fsync on, as a real server (benchmarks); off for tests, which need speed only.
    """
    folder = Path(tempfile.mkdtemp(prefix="mpg-postgres-"))
    data, port = folder / "data", free_port()
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    folder.chmod(0o700)
    run = {"check": True, "capture_output": True, "text": True, "timeout": 120}
    pg_ctl = [_binary("pg_ctl"), "-D", str(data)]
    try:
        subprocess.run(_as_owner([_binary("initdb"), "-D", str(data), "-A", "trust", "-U", "mpg", "--no-sync"]), **run)
        options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={folder}"
        options += "" if durable else " -c fsync=off"
        subprocess.run(_as_owner([*pg_ctl, "-o", options, "-w", "-l", str(folder / "log"), "start"]), **run)
        createdb = [_binary("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "mpg", "monitor"]
        subprocess.run(_as_owner(createdb), **run)
        yield f"postgresql+psycopg://mpg@127.0.0.1:{port}/monitor"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(_as_owner([*pg_ctl, "-m", "immediate", "stop"]), capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
