"""`.gitlab-ci.yml` through gitlab-ci-local (GitLab's schema, rules and `changes:` evaluated as GitLab would).

gitlab-ci-local stands in for a GitLab server, which cannot run here: it validates the
file against GitLab's JSON schema and evaluates `rules` (`changes:` against
`origin/main`, as a merge request or a push to main sees them); the jobs themselves
are not run.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import sh
from training.bench import copy_worktree

ROOT = Path(__file__).resolve().parents[2]
GITLAB_CI_LOCAL = ROOT / "tests" / "tools" / "node_modules" / ".bin" / "gitlab-ci-local"
CHECKS = ["lint", "tests", "manifests", "kubeconform", "compiled-pipeline", "gitops-diff", "dependency-audit"]


@pytest.fixture
def repo(tmp_path, root) -> Path:
    """A clone whose origin/main is the current commit, on an https origin as GitLab's runners have."""
    repo = copy_worktree(root, tmp_path / "repo")
    sh("git", "clone", "-q", "--bare", repo, tmp_path / "origin.git", cwd=tmp_path)
    sh("git", "remote", "add", "origin", tmp_path / "origin.git", cwd=repo)
    sh("git", "fetch", "-q", "origin", cwd=repo)
    sh("git", "remote", "set-head", "origin", "main", cwd=repo)
    sh("git", "remote", "set-url", "origin", "https://gitlab.example.com/mlops/mpg-mlops.git", cwd=repo)
    return repo


def jobs(repo: Path, *variables: str) -> list[str]:
    """The jobs the pipeline would create (when:never left out)."""
    command = [str(GITLAB_CI_LOCAL), "--list-json", *(arg for v in variables for arg in ("--variable", v))]
    result = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return [job["name"] for job in json.loads(result.stdout) if job["when"] != "never"]


def change(repo: Path, path: str, message: str = "change", branch: str | None = None) -> None:
    if branch:
        sh("git", "checkout", "-q", "-b", branch, cwd=repo)
    with open(repo / path, "a") as handle:
        handle.write("\n# changed\n")
    sh("git", "commit", "-qam", message, cwd=repo)


MERGE_REQUEST = ("CI_PIPELINE_SOURCE=merge_request_event", "CI_MERGE_REQUEST_TARGET_BRANCH_NAME=main")


def test_a_merge_request_changing_params_runs_the_checks_and_the_model_gate(repo):
    change(repo, "params.yaml", branch="tune")
    assert jobs(repo, *MERGE_REQUEST) == [*CHECKS, "model-gate"]


def test_a_merge_request_changing_docs_runs_the_checks_only(repo):
    change(repo, "README.md", branch="docs")
    assert jobs(repo, *MERGE_REQUEST) == CHECKS


def test_the_nightly_schedule_runs_the_dependency_audit_only(repo):
    assert jobs(repo, "CI_PIPELINE_SOURCE=schedule") == ["dependency-audit"]


def test_main_touching_a_data_version_submits_training(repo):
    change(repo, "data/auto-mpg.csv.dvc", "new data version")
    assert jobs(repo) == ["submit-training"]


def test_main_touching_training_code_builds_the_image_and_submits_training(repo):
    change(repo, "training/train.py", "selection tweak")
    assert jobs(repo) == ["build-image", "submit-training"]


def test_main_touching_only_the_staging_model_file_promotes_and_never_trains(repo):
    change(repo, "k8s/overlays/staging/model.yaml", "staging: serve model x")
    assert jobs(repo) == ["promote-staging"]


def test_main_touching_the_production_model_file_verifies_production(repo):
    change(repo, "k8s/overlays/production/model.yaml", "production: serve model x")
    assert jobs(repo) == ["verify-production"]


def test_a_bot_commit_never_retrains(repo):
    message = "staging: serve model 0123456789ab\n\nMlops-Bot: bump"
    change(repo, "data/auto-mpg.csv.dvc", message)
    assert jobs(repo, f"CI_COMMIT_MESSAGE={message}") == []
