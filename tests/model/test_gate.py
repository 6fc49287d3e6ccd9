"""The quality gate accepts a good candidate and rejects degraded ones, with reasons."""

from __future__ import annotations

import json

import pytest
from sklearn.dummy import DummyRegressor
from sklearn.pipeline import Pipeline

from core.feature_matrix import FeatureMatrix
from core.model_card import read_card, save_model_dir
from tests.conftest import SEED_DATA, run_mlops
from training.gate import run_gate
from training.train import train


@pytest.fixture(scope="module")
def constant_dir(tmp_path_factory, trained_dir, dataset):
    """A deliberately degraded candidate: predicts the mean mpg whatever the car."""
    model = Pipeline([("features", FeatureMatrix()), ("model", DummyRegressor())]).fit(dataset.X, dataset.y)
    card = read_card(trained_dir).training_facts()
    out = tmp_path_factory.mktemp("constant") / "model"
    save_model_dir(model, out, **{**card, "algorithm": "constant"})
    return out


@pytest.fixture(scope="module")
def baseline_dir(tmp_path_factory, dataset, params):
    """The kernel ridge at a grid point cross-validation did not choose: good enough on its own,
    worse than the selected model on the holdout."""
    out = tmp_path_factory.mktemp("baseline") / "model"
    kernel = params.train.kernel_ridge.model_copy(update={"gamma": [0.01], "alpha": [0.001]})
    only = params.train.model_copy(update={"candidates": ["kernel_ridge"], "kernel_ridge": kernel})
    train(dataset, params.model_copy(update={"train": only}), out)
    return out


def test_good_candidate_passes_every_rule(trained_dir, dataset, params):
    report = run_gate(trained_dir, dataset, params)
    assert report.passed, report.table()
    assert {r.name for r in report.rules} == {
        "holdout_rmse",
        "holdout_r2",
        "weight_monotone_share",
        "predictions_in_range_share",
    }


def test_constant_predictor_is_rejected_with_reasons(constant_dir, dataset, params):
    report = run_gate(constant_dir, dataset, params)
    assert not report.passed
    failed = {r.name for r in report.rules if not r.passed}
    assert {"holdout_rmse", "holdout_r2", "weight_monotone_share"} <= failed
    assert any(reason.startswith("holdout_rmse:") for reason in report.reasons)


def test_worse_than_champion_is_rejected_even_when_absolute_rules_pass(baseline_dir, trained_dir, dataset, params):
    alone = run_gate(baseline_dir, dataset, params)
    assert alone.passed, alone.table()
    against = run_gate(baseline_dir, dataset, params, champion_dir=trained_dir, champion_uri="s3://b/models/mpg/x/")
    assert not against.passed
    assert [r.name for r in against.rules if not r.passed] == ["rmse_increase_vs_champion"]
    assert against.champion_metrics["rmse"] < against.candidate_metrics["rmse"]


def test_champion_against_itself_passes(trained_dir, dataset, params):
    report = run_gate(trained_dir, dataset, params, champion_dir=trained_dir)
    assert report.passed and report.champion_metrics == report.candidate_metrics


def test_gate_cli_exit_status_and_json_report(constant_dir, trained_dir, tmp_path):
    """The real script: 0 passed, 3 rejected (distinct from 1, an error), the reasons in one stderr line."""
    good = run_mlops("gate", "--candidate", trained_dir, "--data", SEED_DATA)
    assert good.returncode == 0 and "gate PASSED" in good.stdout
    report = tmp_path / "gate.json"
    bad = run_mlops("gate", "--candidate", constant_dir, "--data", SEED_DATA, "--report", report)
    assert bad.returncode == 3 and "FAIL" in bad.stdout
    assert bad.stderr.startswith("rejected by the gate: holdout_rmse") and len(bad.stderr.splitlines()) == 1
    decision = json.loads(report.read_text())
    assert decision["passed"] is False and decision["reasons"]
    error = run_mlops("gate", "--candidate", constant_dir, "--data", tmp_path / "missing.csv")
    assert error.returncode == 2, "a usage error is not a rejection"
