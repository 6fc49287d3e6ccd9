"""Candidate models. Each is one scikit-learn Pipeline whose first step takes the seven
canonical features, so whichever wins is saved and served as is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, PolynomialFeatures, StandardScaler
from sklearn.svm import SVR

from core.feature_matrix import FeatureMatrix
from core.features import FEATURE_NAMES
from training.params import TrainParams

Grid = dict[str, list[Any]]


def _columns(*names: str) -> list[int]:
    return [FEATURE_NAMES.index(n) for n in names]


def _one_hot_origin() -> tuple[str, OneHotEncoder, list[int]]:
    return ("origin", OneHotEncoder(categories=[[1.0, 2.0, 3.0]], handle_unknown="ignore"), _columns("origin"))


def _with_features(model: Any) -> Pipeline:
    return Pipeline([("features", FeatureMatrix()), ("model", model)])


def poly_weight_year(params: TrainParams) -> tuple[Pipeline, Grid]:
    """The original project's baseline: polynomial regression on weight and model year."""
    select = ColumnTransformer([("weight_year", "passthrough", _columns("weight", "model_year"))])
    degree = params.poly_weight_year.degree
    return _with_features(make_pipeline(select, PolynomialFeatures(degree), StandardScaler(), LinearRegression())), {}


def linear(params: TrainParams) -> tuple[Pipeline, Grid]:
    """Ordinary least squares on all features, origin one-hot encoded."""
    others = [n for n in FEATURE_NAMES if n != "origin"]
    prep = ColumnTransformer([_one_hot_origin(), ("scaled", StandardScaler(), _columns(*others))])
    return _with_features(make_pipeline(prep, LinearRegression())), {}


def gradient_boosting(params: TrainParams) -> tuple[Pipeline, Grid]:
    """Tree ensemble on the raw features; trees need no scaling or encoding."""
    p = params.gradient_boosting
    model = GradientBoostingRegressor(
        n_estimators=p.n_estimators,
        learning_rate=p.learning_rate,
        max_depth=p.max_depth,
        subsample=p.subsample,
        random_state=params.seed,
    )
    return _with_features(model), {}


def svr(params: TrainParams) -> tuple[Pipeline, Grid]:
    """RBF support vector regression on log-scaled sizes, fitted to log(mpg).

    Fuel use scales roughly as a power of weight, displacement and power, so logs make
    the relation smoother for the kernel; the log target keeps predictions positive.
    """
    logged = _columns("displacement", "horsepower", "weight", "acceleration")
    prep = ColumnTransformer(
        [
            _one_hot_origin(),
            ("logged", make_pipeline(FunctionTransformer(np.log), StandardScaler()), logged),
            ("scaled", StandardScaler(), _columns("cylinders", "model_year")),
        ]
    )
    model = TransformedTargetRegressor(make_pipeline(prep, SVR()), func=np.log, inverse_func=np.exp)
    prefix = "model__regressor__svr__"
    grid = {f"{prefix}C": params.svr.c, f"{prefix}epsilon": params.svr.epsilon, f"{prefix}gamma": params.svr.gamma}
    return _with_features(model), grid


BUILDERS = {
    "poly_weight_year": poly_weight_year,
    "linear": linear,
    "gradient_boosting": gradient_boosting,
    "svr": svr,
}
