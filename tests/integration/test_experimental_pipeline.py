"""The experimental pipeline as a data scientist runs it: in a fresh copy of the repo, offline."""

from __future__ import annotations

import json

import pytest

from core.model_card import md5_file
from tests.conftest import SEED_DATA
from tests.integration.conftest import sh

pytestmark = pytest.mark.slow
TRACKED = ("dvc.lock", "reports")


def test_repro_on_a_fresh_clone_reproduces_the_committed_outputs_byte_for_byte(repo_copy):
    """Same code, data and params: the stages run (a clone has no DVC cache) and change nothing git tracks."""
    assert not (repo_copy / "data" / "auto-mpg.csv").exists()
    sh("mlops", "data", "pull", cwd=repo_copy)
    assert md5_file(repo_copy / "data" / "auto-mpg.csv") == md5_file(SEED_DATA)
    first = sh("dvc", "repro", cwd=repo_copy)
    assert "Running stage 'train'" in first.stdout
    changed = sh("git", "status", "--porcelain", *TRACKED, cwd=repo_copy).stdout
    assert changed == "", f"dvc repro changed tracked outputs (run `dvc repro` and commit):\n{changed}"
    again = sh("dvc", "repro", cwd=repo_copy)
    assert "Running stage" not in again.stdout
    assert sh("dvc", "status", cwd=repo_copy).stdout.strip().endswith("up to date.")


def test_any_code_change_in_the_training_packages_reruns_the_stages(repo_copy):
    sh("mlops", "data", "pull", cwd=repo_copy)
    sh("dvc", "repro", cwd=repo_copy)
    with open(repo_copy / "training" / "selection.py", "a") as handle:
        handle.write("\n# a change to the selection rule\n")
    status = sh("dvc", "status", "--json", cwd=repo_copy).stdout
    assert {"validate", "train", "evaluate"} <= set(json.loads(status))
    sh("git", "checkout", "training/selection.py", cwd=repo_copy)


def test_experiments_metrics_and_plots_are_readable_offline(repo_copy):
    sh("mlops", "data", "pull", cwd=repo_copy)
    sh("dvc", "repro", cwd=repo_copy)
    metrics = json.loads((repo_copy / "reports" / "metrics.json").read_text())
    assert metrics == {"holdout": metrics["holdout"], "cv": metrics["cv"]}, "numbers only: no id, no names"
    values = [v for group in metrics.values() for v in group.values()]
    assert all(isinstance(v, float) for v in values) and len(values) == 5

    exp = sh("dvc", "exp", "run", "-S", "train.candidates=[linear]", cwd=repo_copy)
    assert "Running stage 'train'" in exp.stdout and "Running stage 'validate'" not in exp.stdout
    linear = json.loads((repo_copy / "reports" / "metrics.json").read_text())
    assert linear["cv"]["rmse_mean"] > metrics["cv"]["rmse_mean"] + 0.5, "linear is the weaker candidate"

    sh("dvc", "plots", "show", "-o", repo_copy / "plots-html", cwd=repo_copy)
    html = (repo_copy / "plots-html" / "index.html").read_text()
    for plot in ("predicted_vs_actual.png", "l_per_100km.png", "residuals.png"):
        assert plot in html
    assert "https://" not in html and "vega" not in html.lower(), "renders offline: no script from a CDN"
