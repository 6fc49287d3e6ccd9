"""The experimental pipeline as a data scientist runs it: in a fresh copy of the repo, offline."""

from __future__ import annotations

import json

import pytest

from core.model_card import md5_file
from tests.conftest import SEED_DATA
from tests.integration.conftest import sh

pytestmark = pytest.mark.slow


def test_pull_repro_is_idempotent_and_experiments_run(repo_copy):
    assert not (repo_copy / "data" / "auto-mpg.csv").exists()
    sh("mlops", "data", "pull", cwd=repo_copy)
    assert md5_file(repo_copy / "data" / "auto-mpg.csv") == md5_file(SEED_DATA)

    first = sh("dvc", "repro", cwd=repo_copy)
    assert "Running stage 'train'" in first.stdout
    metrics = json.loads((repo_copy / "reports" / "metrics.json").read_text())
    assert metrics["cv"]["rmse_mean"] <= 2.7 and metrics["holdout"]["rmse"] <= 2.8

    again = sh("dvc", "repro", cwd=repo_copy)
    assert "Running stage" not in again.stdout
    assert sh("dvc", "status", cwd=repo_copy).stdout.strip().endswith("up to date.")

    shown = sh("dvc", "metrics", "show", "--json", cwd=repo_copy).stdout
    assert '"rmse"' in shown

    exp = sh("dvc", "exp", "run", "-S", "train.candidates=[linear]", cwd=repo_copy)
    assert "Running stage 'train'" in exp.stdout and "Running stage 'validate'" not in exp.stdout
    changed = json.loads((repo_copy / "reports" / "metrics.json").read_text())
    assert changed["algorithm"] == "linear" and changed["cv"]["rmse_mean"] > metrics["cv"]["rmse_mean"]
    table = sh("dvc", "exp", "show", "--json", cwd=repo_copy).stdout
    assert "linear" in table

    plots = sh("dvc", "plots", "show", "-o", repo_copy / "plots-html", cwd=repo_copy)
    assert plots.returncode == 0 and (repo_copy / "plots-html" / "index.html").is_file()
