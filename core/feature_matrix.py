"""``FeatureMatrix``: the first step of every saved model (kept apart so that importing the
feature schema does not import scikit-learn)."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from core.features import FEATURE_NAMES


class FeatureMatrix(TransformerMixin, BaseEstimator):
    """First step of every model: the seven canonical features as a float matrix.

    Accepts a DataFrame (columns picked by canonical name, in canonical order) or a
    plain array already in canonical order, so the same ``model.joblib`` serves batch
    prediction on DataFrames and the allocation-light serving path on arrays.
    """

    def fit(self, X, y=None):
        self.n_features_in_ = len(FEATURE_NAMES)
        return self

    def transform(self, X):
        if hasattr(X, "columns"):
            missing = [n for n in FEATURE_NAMES if n not in X.columns]
            if missing:
                raise ValueError(f"input lacks feature column(s): {', '.join(missing)}")
            X = X[list(FEATURE_NAMES)].to_numpy(dtype=float)
        matrix = np.asarray(X, dtype=float)
        if matrix.ndim != 2 or matrix.shape[1] != len(FEATURE_NAMES):
            raise ValueError(f"expected shape (n, {len(FEATURE_NAMES)}) in order {FEATURE_NAMES}, got {matrix.shape}")
        return matrix

    def get_feature_names_out(self, input_features=None):
        return np.asarray(FEATURE_NAMES, dtype=object)
