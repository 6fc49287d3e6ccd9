"""A clone of the project pushing to a bare remote whose pre-receive hook records the push options.

The bare remote stands in for GitLab, which cannot run here: like GitLab it advertises
push options and receives them in its hooks; unlike GitLab it opens no merge request,
it writes down what it was asked (``pushes.jsonl``) for the tests to read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.worktree import copy_worktree, make_remote
from core.model_card import load_model, save_model_dir
from infra.settings import Settings
from infra.store import open_store
from tests.conftest import run_mlops
from tests.integration.conftest import command_env, sh

REPOSITORY = "s3://mpg-mlops/models/mpg"


@dataclass
class GitOpsWorld:
    clone: Path
    remote: Path
    env: dict[str, str]
    models: dict[str, str]  # name -> published URI

    def mlops(self, *args, cwd: Path | None = None):
        return run_mlops(*args, env=self.env, cwd=cwd or self.clone)

    def git(self, *args, cwd: Path | None = None, check: bool = True):
        return sh("git", *args, cwd=cwd or self.clone, check=check)

    def pushes(self) -> list[dict]:
        log = self.remote / "pushes.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def remote_file(self, ref: str, path: str) -> str:
        return self.git("show", f"{ref}:{path}", cwd=self.remote).stdout


def second_model(trained_dir: Path, out: Path) -> Path:
    """Another valid model (same behaviour, different pickle, its own card)."""
    model, card = load_model(trained_dir)
    model.steps[-1][1].fitted_marker_ = str(out)
    save_model_dir(model, out, **card.training_facts())
    return out


@pytest.fixture
def world(tmp_path, root, served_dir) -> GitOpsWorld:
    remote = make_remote(tmp_path / "remote.git")
    clone = copy_worktree(root, tmp_path / "clone")
    sh("git", "remote", "add", "origin", remote, cwd=clone)
    sh("git", "push", "-q", "origin", "main", cwd=clone)
    (remote / "pushes.jsonl").unlink()  # the set-up push is not one the tests look at
    env = {
        **command_env(),
        "MLOPS_STORE_ROOT": str(tmp_path / "store"),
        "MLOPS_CACHE_DIR": str(tmp_path / "cache"),
    }
    env.pop("MLOPS_S3_ENDPOINT_URL", None)
    settings = Settings(store_root=tmp_path / "store", model_repository=REPOSITORY, cache_dir=tmp_path / "cache")
    store = open_store(settings)
    models = {"original": store.publish(served_dir, REPOSITORY).uri}  # the model the overlays name, shipped
    for name in ("b", "c"):
        models[name] = store.publish(second_model(served_dir, tmp_path / name), REPOSITORY).uri
    return GitOpsWorld(clone, remote, env, models)


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
