"""The git token reaches a private repository through GIT_ASKPASS and never appears in an error.

Each read runs in a fresh process, as a pipeline step does (git clients cache
credentials and clones per process).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.integration.conftest import command_env, sh
from tests.integration.git_http import PrivateGitServer

TOKEN = "glpat-s3cr3t-t0ken-value"  # noqa: S105 - a test value
READ = """
import sys, traceback
from training.versioning import read_versioned
try:
    sys.stdout.buffer.write(read_versioned("params.yaml", sys.argv[1], "main"))
except Exception:
    traceback.print_exc()  # the whole chain, as a pod log would show it
    sys.exit(1)
"""


@pytest.fixture(scope="module")
def private_repo(tmp_path_factory, repo_copy):
    root = tmp_path_factory.mktemp("git-server")
    sh("git", "clone", "-q", "--bare", repo_copy, root / "mpg.git", cwd=root)
    server = PrivateGitServer(root, "oauth2", TOKEN)
    yield f"{server.url}/mpg.git"
    server.close()


def read(repo: str, token: str | None) -> subprocess.CompletedProcess:
    env = command_env()
    env.pop("MLOPS_GIT_TOKEN", None)
    if token:
        env["MLOPS_GIT_TOKEN"] = token
    return subprocess.run([sys.executable, "-c", READ, repo], env=env, capture_output=True, timeout=120)


def test_a_private_repository_is_read_with_the_token_from_the_environment(private_repo, repo_copy):
    result = read(private_repo, TOKEN)
    assert result.returncode == 0, result.stderr.decode()
    committed = sh("git", "show", "main:params.yaml", cwd=repo_copy).stdout  # other tests edit the work tree
    assert result.stdout.decode() == committed


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_a_refused_clone_names_the_repository_and_leaks_no_credential(private_repo, token):
    result = read(private_repo, token)
    log = result.stderr.decode()
    assert result.returncode == 1 and "DataVersionError" in log and private_repo in log
    assert TOKEN not in log and (token is None or token not in log)


def test_credentials_written_into_a_url_are_scrubbed_from_the_error(private_repo):
    result = read(private_repo.replace("http://", "http://oauth2:wrong-password@"), None)
    message = result.stderr.decode().strip().splitlines()[-1]
    assert "DataVersionError" in message and "***@" in message and "wrong-password" not in message
