"""Behavioural tests: direction, invariance and minimum functionality of the trained model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.features import FEATURE_NAMES


def predict(model, **overrides):
    base = {
        "cylinders": 4,
        "displacement": 140,
        "horsepower": 90,
        "weight": 2800,
        "acceleration": 15.5,
        "model_year": 1976,
        "origin": 1,
    }
    return float(model.predict(pd.DataFrame([{**base, **overrides}]))[0])


def test_heavier_car_uses_more_fuel_all_else_equal(model, dataset):
    X = dataset.X.to_numpy()
    heavier = X.copy()
    heavier[:, FEATURE_NAMES.index("weight")] *= 1.15
    assert (model.predict(heavier) < model.predict(X)).mean() >= 0.95
    assert predict(model, weight=3500) < predict(model, weight=2500)


def test_newer_car_uses_less_fuel_all_else_equal(model, dataset):
    # Six years newer, staying inside the 1970-1982 training range: year-to-year the
    # data itself dips (heavy US cars of 1973-75), and past 1982 the model extrapolates.
    year = FEATURE_NAMES.index("model_year")
    X = dataset.X.to_numpy()
    X = X[X[:, year] <= 1976]
    newer = X.copy()
    newer[:, year] += 6
    assert (model.predict(newer) > model.predict(X)).mean() >= 0.95


def test_prediction_is_invariant_to_column_order_and_input_type(model, dataset):
    frame = dataset.X.head(20)
    expected = model.predict(frame)
    assert np.array_equal(model.predict(frame[list(reversed(FEATURE_NAMES))]), expected)
    assert np.allclose(model.predict(frame.to_numpy()), expected, atol=1e-12)


@pytest.mark.parametrize(
    ("car", "low", "high"),
    [
        (
            {
                "cylinders": 8,
                "displacement": 400,
                "horsepower": 175,
                "weight": 4500,
                "model_year": 1971,
                "acceleration": 11.5,
            },
            9,
            17,
        ),
        (
            {
                "cylinders": 4,
                "displacement": 85,
                "horsepower": 65,
                "weight": 2000,
                "model_year": 1981,
                "origin": 3,
                "acceleration": 17,
            },
            32,
            45,
        ),
        ({"cylinders": 6, "displacement": 225, "horsepower": 100, "weight": 3300, "model_year": 1977}, 17, 24),
    ],
)
def test_minimum_functionality_on_typical_cars(model, car, low, high):
    assert low <= predict(model, **car) <= high


def test_predictions_stay_physical_on_every_training_row(model, dataset):
    predicted = model.predict(dataset.X)
    assert np.isfinite(predicted).all() and (predicted > 5).all() and (predicted < 60).all()
