"""Fixtures for integration tests: real git repos and DVC (the S3 server on loopback is in tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.worktree import copy_worktree

BIN = Path(sys.executable).parent
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}


def command_env(**extra: str) -> dict[str, str]:
    """Environment for subprocesses: this venv's tools first, a git identity, no user config."""
    env = {**os.environ, **GIT_IDENTITY, **extra}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    env.pop("MLOPS_PROJECT_ROOT", None)
    return env


def sh(*args, cwd: Path, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=command_env(**env), capture_output=True, text=True, timeout=600
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def repo_copy(tmp_path_factory, root) -> Path:
    """A fresh git repository holding what a clone of this project holds (tracked + unignored files)."""
    return copy_worktree(root, tmp_path_factory.mktemp("clone") / "repo")
