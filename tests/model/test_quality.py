"""The project's seeded evaluation targets and reproducibility."""

from __future__ import annotations

import numpy as np

from core.model_card import load_model, read_card
from training.train import train


def test_selected_model_meets_the_gates_absolute_targets(trained_dir, params):
    """The figures params.yaml's gate demands of any published model (the relative rule, no worse
    than the champion, is the gate tests' business)."""
    metrics = read_card(trained_dir).metrics
    assert metrics.holdout.rmse <= params.gate.max_holdout_rmse
    assert metrics.holdout.r2 >= params.gate.min_holdout_r2
    assert metrics.cv_rmse_mean <= params.gate.max_holdout_rmse + metrics.cv_rmse_std, "CV agrees within its spread"


def test_selected_model_beats_the_original_baseline_and_the_linear_model(trained_dir):
    card = read_card(trained_dir)
    scores = {name: s.cv_rmse_mean for name, s in card.metrics.candidates.items()}
    assert scores[card.algorithm] == min(scores.values())
    assert scores[card.algorithm] < scores["poly_weight_year"] < scores["linear"]


def test_training_twice_gives_byte_identical_model_directories(trained_dir, dataset, params, tmp_path):
    """Same code, data and params: the same model file and the same card, byte for byte (DVC sees no change)."""
    again = train(dataset, params, tmp_path / "again")
    first = read_card(trained_dir)
    assert again.id == first.id and again.metrics == first.metrics
    for name in ("model.joblib", "model.json"):
        assert (tmp_path / "again" / name).read_bytes() == (trained_dir / name).read_bytes(), name
    X = dataset.X.to_numpy()
    assert np.array_equal(load_model(trained_dir)[0].predict(X), load_model(tmp_path / "again")[0].predict(X))
