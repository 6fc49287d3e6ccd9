"""Candidate models: the one registry. A candidate is one class here and one block in ``params.yaml``.

Each class names its params block (a pydantic model, validated by ``training.params``)
and builds one scikit-learn Pipeline whose first step takes the seven canonical
features, so whichever wins is saved and served as is. scikit-learn is imported only
when a candidate is built: reading params (the pipeline's light steps) needs none of it.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat

from core.features import FEATURE_NAMES

Grid = dict[str, list[Any]]


class CandidateParams(BaseModel):
    """A candidate's block in params.yaml; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class Candidate:
    """A model family: its params block (``Params``) and how to build the estimator and its grid."""

    name: ClassVar[str]
    Params: ClassVar[type[CandidateParams]] = CandidateParams

    def build(self, params: CandidateParams, seed: int) -> tuple[Any, Grid]:
        raise NotImplementedError


def _columns(*names: str) -> list[int]:
    return [FEATURE_NAMES.index(n) for n in names]


def _one_hot_origin():
    from sklearn.preprocessing import OneHotEncoder

    return ("origin", OneHotEncoder(categories=[[1.0, 2.0, 3.0]], handle_unknown="ignore"), _columns("origin"))


def _with_features(model: Any):
    from sklearn.pipeline import Pipeline

    from core.feature_matrix import FeatureMatrix

    return Pipeline([("features", FeatureMatrix()), ("model", model)])


class PolyWeightYear(Candidate):
    """The original project's baseline: polynomial regression on weight and model year."""

    name = "poly_weight_year"

    class Params(CandidateParams):
        degree: int = Field(2, ge=1, le=5)

    def build(self, params: Params, seed: int) -> tuple[Any, Grid]:
        from sklearn.compose import ColumnTransformer
        from sklearn.linear_model import LinearRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import PolynomialFeatures, StandardScaler

        select = ColumnTransformer([("weight_year", "passthrough", _columns("weight", "model_year"))])
        model = make_pipeline(select, PolynomialFeatures(params.degree), StandardScaler(), LinearRegression())
        return _with_features(model), {}


class Linear(Candidate):
    """Ordinary least squares on all features, origin one-hot encoded."""

    name = "linear"

    def build(self, params: CandidateParams, seed: int) -> tuple[Any, Grid]:
        from sklearn.compose import ColumnTransformer
        from sklearn.linear_model import LinearRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        others = [n for n in FEATURE_NAMES if n != "origin"]
        prep = ColumnTransformer([_one_hot_origin(), ("scaled", StandardScaler(), _columns(*others))])
        return _with_features(make_pipeline(prep, LinearRegression())), {}


class GradientBoosting(Candidate):
    """Tree ensemble on the raw features; trees need no scaling or encoding."""

    name = "gradient_boosting"

    class Params(CandidateParams):
        n_estimators: int = Field(400, ge=1)
        learning_rate: float = Field(0.03, gt=0, le=1)
        max_depth: int = Field(3, ge=1)
        subsample: float = Field(0.8, gt=0, le=1)

    def build(self, params: Params, seed: int) -> tuple[Any, Grid]:
        from sklearn.ensemble import GradientBoostingRegressor

        return _with_features(GradientBoostingRegressor(**params.model_dump(), random_state=seed)), {}


def _log_sizes():
    """Origin one-hot; displacement, power, weight and acceleration logged, then everything standardised.

    Fuel use scales roughly as a power of weight, displacement and power, so logs make
    the relation smoother for an RBF kernel.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    logged = _columns("displacement", "horsepower", "weight", "acceleration")
    return ColumnTransformer(
        [
            _one_hot_origin(),
            ("logged", make_pipeline(FunctionTransformer(np.log), StandardScaler()), logged),
            ("scaled", StandardScaler(), _columns("cylinders", "model_year")),
        ]
    )


def _log_target(model: Any):
    """``model`` after the log-size features, fitted to log(mpg): predictions stay positive."""
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.pipeline import make_pipeline

    return _with_features(
        TransformedTargetRegressor(make_pipeline(_log_sizes(), model), func=np.log, inverse_func=np.exp)
    )


class KernelRidge(Candidate):
    """RBF kernel ridge regression, the kernel approximated by Nystroem, on log sizes, fitted to log(mpg).

    Its cost grows linearly with the rows: the kernel is taken against ``components``
    rows sampled from the training data (all of them while there are fewer), so a fit
    is a ridge regression on that many features. The exact kernel methods (``svr``)
    grow with the square of the rows and more; their fits took hours at 100x the data.
    gamma and alpha are grid-searched inside cross-validation.
    """

    name = "kernel_ridge"

    class Params(CandidateParams):
        """Lists: the values the grid search tries."""

        components: int = Field(300, ge=10, le=5000)
        gamma: list[PositiveFloat] = Field(default_factory=lambda: [0.01, 0.03, 0.1], min_length=1)
        alpha: list[PositiveFloat] = Field(default_factory=lambda: [0.001, 0.01, 0.1], min_length=1)

    def build(self, params: Params, seed: int) -> tuple[Any, Grid]:
        from sklearn.kernel_approximation import Nystroem
        from sklearn.linear_model import Ridge
        from sklearn.pipeline import make_pipeline

        # With fewer rows than components Nystroem uses them all (the exact kernel) and warns
        # so: training.train silences that one warning.
        kernel = Nystroem(kernel="rbf", n_components=params.components, random_state=seed)
        prefix = "model__regressor__pipeline__"
        grid = {f"{prefix}nystroem__gamma": params.gamma, f"{prefix}ridge__alpha": params.alpha}
        return _log_target(make_pipeline(kernel, Ridge())), grid


class Svr(Candidate):
    """RBF support vector regression on log-scaled sizes, fitted to log(mpg); C, epsilon and gamma
    grid-searched inside cross-validation. Exact: its fit grows with the square of the rows or
    more, so it is not among the default candidates (``kernel_ridge`` scales linearly)."""

    name = "svr"

    class Params(CandidateParams):
        """Lists: the values the grid search tries."""

        c: list[PositiveFloat] = Field(default_factory=lambda: [1.0, 3.0], min_length=1)
        epsilon: list[NonNegativeFloat] = Field(default_factory=lambda: [0.03, 0.05], min_length=1)
        gamma: list[PositiveFloat | Literal["scale", "auto"]] = Field(
            default_factory=lambda: ["scale", 0.1], min_length=1
        )

    def build(self, params: Params, seed: int) -> tuple[Any, Grid]:
        from sklearn.svm import SVR

        prefix = "model__regressor__svr__"
        grid = {f"{prefix}C": params.c, f"{prefix}epsilon": params.epsilon, f"{prefix}gamma": params.gamma}
        return _log_target(SVR()), grid


#: Every candidate, in the order ties are broken (simpler first).
CANDIDATES: dict[str, Candidate] = {c.name: c() for c in (PolyWeightYear, Linear, GradientBoosting, KernelRidge, Svr)}


def build(name: str, train_params) -> tuple[Any, Grid]:
    """The estimator and grid of candidate ``name`` with its block of ``train_params``."""
    return CANDIDATES[name].build(getattr(train_params, name), train_params.seed)
