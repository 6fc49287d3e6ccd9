"""The compiled hot path: used for the linear and kernel candidates, equal to model.predict within 1e-9."""

from __future__ import annotations

import numpy as np
import pytest

from core.model_card import read_card
from serving.fastpath import TOLERANCE, fast_predictor
from training.candidates import build


def ranges(trained_dir):
    card = read_card(trained_dir)
    return np.array([f.min for f in card.features]), np.array([f.max for f in card.features])


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("svr", "compiled"),
        ("kernel_ridge", "compiled"),
        ("linear", "compiled"),
        ("poly_weight_year", "compiled"),
        ("gradient_boosting", "model.predict"),
    ],
)
def test_each_candidate_gets_the_expected_path_and_the_same_predictions(name, path, dataset, params, trained_dir):
    estimator, grid = build(name, params.train)
    estimator.set_params(**{key: values[0] for key, values in grid.items()}).fit(dataset.X, dataset.y)
    predict, chosen = fast_predictor(estimator, *ranges(trained_dir))
    assert chosen == path
    rows = dataset.X.to_numpy()
    assert np.max(np.abs(predict(rows) - estimator.predict(rows))) <= TOLERANCE
    singles = np.concatenate([predict(row[None, :]) for row in rows[:50]])
    expected = np.concatenate([estimator.predict(row[None, :]) for row in rows[:50]])
    assert np.max(np.abs(singles - expected)) <= TOLERANCE


def test_a_compiled_function_that_disagrees_is_not_used(model, trained_dir, monkeypatch):
    from serving import fastpath

    monkeypatch.setattr(fastpath, "compile_model", lambda est: lambda X: model.predict(X) + 1e-6)
    predict, chosen = fastpath.fast_predictor(model, *ranges(trained_dir))
    assert chosen == "model.predict" and predict == model.predict
