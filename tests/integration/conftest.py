"""Fixtures for integration tests: real git repos, DVC, and moto's S3 server on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from training.bench import copy_worktree

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


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1, a random port (as dvc-s3's own tests do)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """Credentials for the moto server, from the environment as in production."""
    values = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return {"endpoint": s3_server, **values}


@pytest.fixture
def bucket(s3_env, request) -> str:
    """An empty bucket on the moto server, named after the test."""
    import boto3

    name = request.node.name.lower().replace("_", "-")[:50].strip("-")  # a valid S3 bucket name
    boto3.client("s3", endpoint_url=s3_env["endpoint"]).create_bucket(Bucket=name)
    return name
