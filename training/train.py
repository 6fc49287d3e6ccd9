"""Cross-validated candidate selection and the final fit.

``train`` (the experimental pipeline) scores every candidate, then fits the best.
The Kubeflow pipeline runs ``train_candidate`` once per candidate in parallel and
then picks among the saved candidates (``training.selection``), which needs no
scikit-learn and so costs no second import of it.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold

from core.errors import ParamsError
from core.features import FEATURE_NAMES, TARGET
from core.model_card import (
    CandidateScore,
    DataRef,
    FeatureProfile,
    Histogram,
    HoldoutMetrics,
    Metrics,
    ModelCard,
    ReferenceProfile,
    feature_ranges,
    save_model_dir,
)
from training.candidates import build
from training.data import Dataset, holdout_split
from training.evaluate import regression_metrics
from training.params import Params, TrainParams
from training.selection import select

Progress = Callable[[CandidateScore], None]


def score_candidate(name: str, train: pd.DataFrame, params: TrainParams) -> CandidateScore:
    """K-fold CV RMSE of a candidate on the training rows (grid-searched when it has a grid)."""
    if params.cv_folds > len(train):
        raise ParamsError(f"train.cv_folds={params.cv_folds} is more than the {len(train)} training rows")
    estimator, grid = build(name, params)
    folds = KFold(n_splits=params.cv_folds, shuffle=True, random_state=params.seed)
    search = GridSearchCV(estimator, grid or {}, cv=folds, scoring="neg_root_mean_squared_error", refit=False)
    with exact_kernel_is_fine():
        search.fit(train[list(FEATURE_NAMES)], train[TARGET])
    best = search.best_index_
    return CandidateScore(
        name=name,
        cv_rmse_mean=round(float(-search.cv_results_["mean_test_score"][best]), 6),
        cv_rmse_std=round(float(search.cv_results_["std_test_score"][best]), 6),
        best_params=dict(search.best_params_),
    )


def fit_selected(score: CandidateScore, train: pd.DataFrame, params: TrainParams):
    """Fit the selected candidate, at its best grid point, on all training rows."""
    estimator, _ = build(score.name, params)
    model = clone(estimator).set_params(**score.best_params)
    with exact_kernel_is_fine():
        return model.fit(train[list(FEATURE_NAMES)], train[TARGET])


@contextlib.contextmanager
def exact_kernel_is_fine():
    """Silence Nystroem's warning that it uses every row when there are fewer than its components:
    on small data the exact kernel is what we want (kernel_ridge)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="n_components > n_samples", category=UserWarning)
        yield


FEW_VALUES = 16  # a feature with at most this many distinct training values also gets category shares


def reference_profile(model, train: pd.DataFrame) -> ReferenceProfile:
    """Histograms and category shares of the training rows and of the model's predictions on them."""
    features = []
    for name in FEATURE_NAMES:
        column = train[name].astype(float)
        shares = column.value_counts(normalize=True).sort_index()
        categories = (
            {f"{value:g}": round(float(share), 6) for value, share in shares.items()}
            if len(shares) <= FEW_VALUES
            else None
        )
        features.append(FeatureProfile(name=name, histogram=Histogram.of(column), categories=categories))
    return ReferenceProfile(
        rows=len(train), features=features, predictions=Histogram.of(model.predict(train[list(FEATURE_NAMES)]))
    )


def card_fields(
    dataset: Dataset, params: Params, scores: list[CandidateScore], winner: CandidateScore, model, test, train
) -> dict[str, Any]:
    """Model card content (all but id, code version and library versions)."""
    holdout = regression_metrics(test[TARGET], model.predict(test[list(FEATURE_NAMES)]))
    features = train[list(FEATURE_NAMES)]
    return {
        "algorithm": winner.name,
        "data": DataRef(path=str(params.data.path), md5=dataset.md5, rows=len(dataset.frame)),
        "params": {**params.model_dump(mode="json"), "selected": {winner.name: winner.best_params}},
        "metrics": Metrics(
            cv_rmse_mean=winner.cv_rmse_mean,
            cv_rmse_std=winner.cv_rmse_std,
            holdout=HoldoutMetrics(**holdout),
            train_rows=len(train),
            holdout_rows=len(test),
            candidates={s.name: s for s in scores},
        ),
        "features": feature_ranges(features.min().to_dict(), features.max().to_dict()),
        "profile": reference_profile(model, train),
    }


def train_candidate(name: str, dataset: Dataset, params: Params, out_dir: Path) -> ModelCard:
    """Score one candidate, fit it at its best grid point, save it (a parallel branch of the pipeline)."""
    train_rows, test_rows = holdout_split(dataset.frame, params.split.test_size, params.split.seed)
    score = score_candidate(name, train_rows, params.train)
    model = fit_selected(score, train_rows, params.train)
    return save_model_dir(model, out_dir, **card_fields(dataset, params, [score], score, model, test_rows, train_rows))


def train(dataset: Dataset, params: Params, out_dir: Path, progress: Progress | None = None) -> ModelCard:
    """Score every candidate (``progress`` hears of each as it finishes), fit the best, save the model directory."""
    train_rows, test_rows = holdout_split(dataset.frame, params.split.test_size, params.split.seed)
    scores = []
    for name in params.train.candidates:
        scores.append(score_candidate(name, train_rows, params.train))
        if progress:
            progress(scores[-1])
    winner = select(scores, params.train.candidates)
    model = fit_selected(winner, train_rows, params.train)
    fields = card_fields(dataset, params, scores, winner, model, test_rows, train_rows)
    return save_model_dir(model, out_dir, **fields)
