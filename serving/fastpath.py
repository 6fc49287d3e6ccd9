"""Compile a fitted scikit-learn pipeline into plain numpy, for the serving hot path.

scikit-learn re-validates its input at every step of every ``predict`` call: about
2 ms for one car through this project's pipeline, against tens of microseconds for
the arithmetic. ``compile_model`` rebuilds the same arithmetic from the fitted
attributes of the step types the candidates use. Anything else raises
``UnsupportedStepError``, and ``fast_predictor`` then keeps ``model.predict``. Either way the
result is checked against ``model.predict`` on probe inputs before it is used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

logger = logging.getLogger(__name__)
Fn = Callable[[np.ndarray], np.ndarray]
TOLERANCE = 1e-9
SMALL_BATCH = 4


class UnsupportedStepError(TypeError):
    """A step type the compiler does not know."""


def _pipeline(steps: list[Fn]) -> Fn:
    def run(X):
        for step in steps:
            X = step(X)
        return X

    return run


def _column_transformer(est) -> Fn:
    parts = []
    for _, transformer, columns in est.transformers_:
        if isinstance(transformer, str) and transformer == "drop":
            continue
        cols = np.asarray(columns)
        inner = (lambda X: X) if isinstance(transformer, str) else compile_model(transformer)
        parts.append((cols, inner))
    return lambda X: np.concatenate([inner(X[:, cols]) for cols, inner in parts], axis=1)


def _one_hot(est) -> Fn:
    if est.drop is not None or est.handle_unknown not in {"ignore", "error"}:
        raise UnsupportedStepError("OneHotEncoder with drop")
    categories = [np.asarray(c) for c in est.categories_]
    return lambda X: np.concatenate([X[:, [j]] == cats for j, cats in enumerate(categories)], axis=1).astype(float)


def _scaler(est) -> Fn:
    mean = est.mean_ if est.with_mean else 0.0
    scale = est.scale_ if est.with_std else 1.0
    return lambda X: (X - mean) / scale


def _function(est) -> Fn:
    if est.kw_args:
        raise UnsupportedStepError("FunctionTransformer with kw_args")
    return (lambda X: X) if est.func is None else est.func  # None: ColumnTransformer's "passthrough"


def _polynomial(est) -> Fn:
    powers = est.powers_
    return lambda X: np.prod(X[:, None, :] ** powers[None, :, :], axis=2)


def _linear(est) -> Fn:
    coef, intercept = est.coef_, est.intercept_
    return lambda X: X @ coef + intercept


def _svr(est) -> Fn:
    if est.kernel != "rbf":
        raise UnsupportedStepError(f"SVR kernel {est.kernel}")
    vectors, dual, intercept, gamma = est.support_vectors_, est.dual_coef_[0], est.intercept_[0], est._gamma

    squared = np.einsum("ij,ij->i", vectors, vectors)

    def predict(X):
        if len(X) <= SMALL_BATCH:
            # Elementwise: for a few rows a (threaded) GEMM call costs more than it saves.
            difference = X[:, None, :] - vectors[None, :, :]
            distances = np.einsum("ijk,ijk->ij", difference, difference)
        else:
            distances = np.einsum("ij,ij->i", X, X)[:, None] + squared[None, :] - 2.0 * X @ vectors.T
        return np.exp(-gamma * distances) @ dual + intercept

    return predict


def _nystroem(est) -> Fn:
    if est.kernel != "rbf" or est.kernel_params:
        raise UnsupportedStepError(f"Nystroem kernel {est.kernel}")
    components, normalization, gamma = est.components_, est.normalization_.T, est.gamma
    squared = np.einsum("ij,ij->i", components, components)

    def transform(X):
        # scikit-learn's operations in scikit-learn's order (euclidean_distances, rbf_kernel): the
        # normalization amplifies rounding differences past the tolerance otherwise
        kernel = -2.0 * (X @ components.T)
        kernel += np.einsum("ij,ij->i", X, X)[:, None]
        kernel += squared[None, :]
        np.maximum(kernel, 0.0, out=kernel)
        kernel *= -gamma
        np.exp(kernel, kernel)
        return kernel @ normalization

    return transform


def _target(est) -> Fn:
    inner, inverse = compile_model(est.regressor_), est.transformer_.inverse_func
    if inverse is None or est.transformer_.kw_args or est.transformer_.inv_kw_args:
        raise UnsupportedStepError("TransformedTargetRegressor without a plain inverse_func")
    return lambda X: inverse(inner(X))


def compile_model(est) -> Fn:
    """A numpy function computing ``est.predict`` (or ``transform``) for a float matrix."""
    from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
    from sklearn.kernel_approximation import Nystroem
    from sklearn.linear_model import LinearRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, PolynomialFeatures, StandardScaler
    from sklearn.svm import SVR

    from core.feature_matrix import FeatureMatrix

    if isinstance(est, Pipeline):
        return _pipeline([compile_model(step) for _, step in est.steps if step != "passthrough"])
    compilers = {
        FeatureMatrix: lambda e: lambda X: X,  # the hot path already holds canonical float rows
        ColumnTransformer: _column_transformer,
        OneHotEncoder: _one_hot,
        StandardScaler: _scaler,
        FunctionTransformer: _function,
        PolynomialFeatures: _polynomial,
        LinearRegression: _linear,
        Ridge: _linear,
        SVR: _svr,
        Nystroem: _nystroem,
        TransformedTargetRegressor: _target,
    }
    compiler = compilers.get(type(est))
    if compiler is None:
        raise UnsupportedStepError(type(est).__name__)
    return compiler(est)


def probe_inputs(low: np.ndarray, high: np.ndarray, n: int = 256, seed: int = 0) -> np.ndarray:
    """Random rows inside the training ranges, whole numbers where the training data had them."""
    rng = np.random.default_rng(seed)
    rows = low + rng.random((n, low.size)) * (high - low)
    whole = (low % 1 == 0) & (high % 1 == 0) & (high - low <= 20)  # counts, years, origin
    rows[:, whole] = np.round(rows[:, whole])
    return rows


def fast_predictor(model, low: np.ndarray, high: np.ndarray) -> tuple[Fn, str]:
    """The compiled function if it matches ``model.predict`` within 1e-9 on probe rows, else ``model.predict``."""
    try:
        compiled = compile_model(model)
    except (UnsupportedStepError, AttributeError, ValueError) as e:  # a step whose fitted state differs
        logger.info("serving through model.predict: no fast path for %s", e)
        return model.predict, "model.predict"
    probes = probe_inputs(low, high)
    # Batches against a batch, single rows against single rows: BLAS rounds a one-row product
    # differently, and an ill-conditioned model (Nystroem's normalization) shows it above 1e-9.
    batch = np.max(np.abs(compiled(probes) - model.predict(probes)))
    single = max(abs(compiled(row[None, :])[0] - model.predict(row[None, :])[0]) for row in probes[:32])
    difference = float(max(batch, single))
    if not difference <= TOLERANCE:
        logger.warning("fast path differs from model.predict by %.3g; serving through model.predict", difference)
        return model.predict, "model.predict"
    return compiled, "compiled"
