"""The quality gate accepts a good candidate and rejects degraded ones, with reasons."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from sklearn.dummy import DummyRegressor
from sklearn.pipeline import Pipeline

from core.feature_matrix import FeatureMatrix
from core.model_card import read_card, save_model_dir
from tests.conftest import ROOT, SEED_DATA, one_line_error, run_mlops
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


def test_the_trusted_holdout_is_the_seeds_held_out_rows_and_its_dvc_version(root, params):
    """Frozen from the seed by `mlops data freeze-holdout`; the .dvc file pins those very bytes."""
    from training.data import holdout_lines

    rows = holdout_lines(SEED_DATA, params.split.test_size, params.split.seed)
    text = rows.to_csv(index=False, lineterminator="\n")
    dvc_file = (root / params.data.trusted_holdout).with_suffix(".csv.dvc").read_text()
    digest = hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()
    assert f"md5: {digest}" in dvc_file, "data/trusted/holdout.csv is not the seed's held-out rows"
    assert len(rows) > 60


def test_good_candidate_passes_every_rule_and_names_both_holdouts(trained_dir, dataset, params, trusted):
    report = run_gate(trained_dir, dataset, params, trusted)
    assert report.passed, report.table()
    assert {r.name for r in report.rules} == {
        "trusted_holdout_rmse",
        "trusted_holdout_r2",
        "trusted_rows_in_training",
        "weight_monotone_share",
        "predictions_in_range_share",
    }
    assert set(report.evaluations) == {"trusted holdout", "rolling holdout"}
    assert "trusted holdout" in report.table() and "rolling holdout" in report.table()


def test_a_split_that_trains_on_trusted_rows_is_rejected(trained_dir, dataset, params, trusted):
    """Another split seed puts trusted rows on the training side: scored on them, a candidate would look
    better than it is."""
    other = params.model_copy(update={"split": params.split.model_copy(update={"seed": 7})})
    report = run_gate(trained_dir, dataset, other, trusted)
    (rule,) = [r for r in report.rules if r.name == "trusted_rows_in_training"]
    assert not rule.passed and rule.observed > len(trusted.frame) / 2, report.table()


def test_constant_predictor_is_rejected_with_reasons(constant_dir, dataset, params, trusted):
    report = run_gate(constant_dir, dataset, params, trusted)
    assert not report.passed
    failed = {r.name for r in report.rules if not r.passed}
    assert {"trusted_holdout_rmse", "trusted_holdout_r2", "weight_monotone_share"} <= failed
    assert any(reason.startswith("trusted_holdout_rmse:") for reason in report.reasons)


def test_worse_than_champion_is_rejected_even_when_absolute_rules_pass(
    baseline_dir, trained_dir, dataset, params, trusted
):
    alone = run_gate(baseline_dir, dataset, params, trusted)
    assert alone.passed, alone.table()
    against = run_gate(
        baseline_dir, dataset, params, trusted, champion_dir=trained_dir, champion_uri="s3://b/models/mpg/x/"
    )
    assert not against.passed
    assert [r.name for r in against.rules if not r.passed] == ["trusted_rmse_increase_vs_champion"]
    assert against.champion_metrics["rmse"] < against.candidate_metrics["rmse"]


def test_champion_against_itself_passes(trained_dir, dataset, params, trusted):
    report = run_gate(trained_dir, dataset, params, trusted, champion_dir=trained_dir)
    assert report.passed and report.champion_metrics == report.candidate_metrics


def test_gate_cli_exit_status_and_json_report(constant_dir, trained_dir, tmp_path, trusted_csv):
    """The real script: 0 passed, 3 rejected (distinct from 1, an error), the reasons in one stderr line."""
    good = run_mlops("gate", "--candidate", trained_dir, "--data", SEED_DATA, "--trusted", trusted_csv)
    assert good.returncode == 0 and "gate PASSED" in good.stdout
    report = tmp_path / "gate.json"
    bad = run_mlops(
        "gate", "--candidate", constant_dir, "--data", SEED_DATA, "--trusted", trusted_csv, "--report", report
    )
    assert bad.returncode == 3 and "FAIL" in bad.stdout
    assert bad.stderr.startswith("rejected by the gate: trusted_holdout_rmse") and len(bad.stderr.splitlines()) == 1
    decision = json.loads(report.read_text())
    assert decision["passed"] is False and decision["reasons"]
    error = run_mlops("gate", "--candidate", constant_dir, "--data", tmp_path / "missing.csv")
    assert error.returncode == 2, "a usage error is not a rejection"
    clone = tmp_path / "clone"  # a fresh clone before `mlops data pull`: no trusted holdout in the workspace
    clone.mkdir()
    shutil.copy(ROOT / "params.yaml", clone / "params.yaml")
    line = one_line_error(run_mlops("gate", "--candidate", constant_dir, "--data", SEED_DATA, cwd=clone))
    assert "data/trusted/holdout.csv not found" in line and "mlops data pull" in line


# The review's leakage attack: the trusted holdout is readable (recomputable from the seed and split.seed), and
# its cars reported at their true consumption + 0.01 had other row keys, so the exact-copy rule counted 0 while
# the candidate was fitted on the rows it is judged on. Every form of the same car is a copy now.
FORMS = ["the consumption + 0.01", "sizes moved 1-1.5 %", "weight rounded to 10 lb, power to 1 hp"]


def _forms(frame):
    return {
        "the consumption + 0.01": frame.assign(mpg=frame["mpg"] + 0.01),
        "sizes moved 1-1.5 %": frame.assign(
            displacement=frame["displacement"] * 1.01,
            weight=frame["weight"] * 0.99,
            horsepower=frame["horsepower"] * 1.015,
        ),  # fmt: skip
        "weight rounded to 10 lb, power to 1 hp": frame.assign(
            weight=(frame["weight"] / 10).round() * 10, horsepower=frame["horsepower"].round()
        ),
    }


@pytest.mark.parametrize("form", FORMS)
def test_every_form_of_a_trusted_car_is_a_copy(trusted, form):
    from training.gate import near_copies

    assert near_copies(_forms(trusted.frame)[form], trusted.frame) == len(trusted.frame)


def test_other_cars_are_not_copies(dataset, params, trusted):
    from training.data import holdout_split
    from training.gate import near_copies

    seed_training, _ = holdout_split(dataset.frame, params.split.test_size, params.split.seed)
    assert near_copies(seed_training, trusted.frame) == 0, "the seed's own training rows: no copy"
    heavier = trusted.frame.assign(weight=trusted.frame["weight"] * 1.05)
    assert near_copies(heavier, trusted.frame) == 0, "5 % heavier is another car"


def test_a_dataset_holding_the_trusted_cars_again_is_rejected(trained_dir, dataset, params, trusted):
    import dataclasses

    import pandas as pd

    poisoned = pd.concat([dataset.frame, _forms(trusted.frame)["the consumption + 0.01"]], ignore_index=True)
    report = run_gate(trained_dir, dataclasses.replace(dataset, frame=poisoned), params, trusted)
    (rule,) = [r for r in report.rules if r.name == "trusted_rows_in_training"]
    assert not rule.passed and rule.observed > len(trusted.frame) / 2, report.table()
