"""Batch prediction on a CSV of cars (raw or canonical column names).

The output is the input, columns and values unchanged, plus ``predicted_mpg``,
``predicted_l_per_100km`` and ``outside_training_range`` (the features outside the
ranges the model was trained on, as the API flags them). By default any bad cell
stops the run with its line and column and nothing is written; given a file for
rejected rows, the valid rows are scored and the others go there, unchanged, with
their line and reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.atomic import atomic_write
from core.errors import DataValidationError
from core.features import FEATURE_NAMES, to_l_per_100km
from core.model_card import load_model
from training.data import read_table, require_columns
from training.validation import FIRST_DATA_LINE, validate_table

PREDICTION_COLUMNS = ("predicted_mpg", "predicted_l_per_100km", "outside_training_range")


@dataclass(frozen=True)
class Scored:
    predicted: int
    rejected: int


def _outside(matrix: np.ndarray, card) -> list[str]:
    low = np.array([f.min for f in card.features])
    high = np.array([f.max for f in card.features])
    outside = (matrix < low) | (matrix > high)
    return [";".join(FEATURE_NAMES[j] for j in np.flatnonzero(row)) for row in outside]


def _rejections(table: pd.DataFrame, report) -> pd.DataFrame:
    """The rejected rows, unchanged, with the file line and every reason."""
    reasons: dict[int, list[str]] = {}
    for issue in report.errors:
        reasons.setdefault(issue.line, []).append(f"{issue.column}: {issue.message}")
    lines = sorted(reasons)
    rejected = table.iloc[[line - FIRST_DATA_LINE for line in lines]].copy()
    rejected.insert(0, "line", lines)
    rejected["reason"] = ["; ".join(reasons[line]) for line in lines]
    return rejected


def predict_file(model_dir: Path, input_path: Path, output_path: Path, rejected_path: Path | None = None) -> Scored:
    """Write the input plus the prediction columns to ``output_path``; returns how many rows went where."""
    table = read_table(input_path)
    clash = [c for c in PREDICTION_COLUMNS if c in table.columns]
    if clash:
        raise DataValidationError(f"{input_path} already has the column(s) {', '.join(clash)}; rename them first")
    parsed, report = validate_table(table, require_target=False, missing_is_error=True)
    require_columns(input_path, report, table.columns)
    if not report.valid and rejected_path is None:
        raise DataValidationError(
            f"{input_path} cannot be scored (--rejected FILE scores the valid rows):\n{report.summary()}", report
        )
    bad = {i.line - FIRST_DATA_LINE for i in report.errors}
    keep = [index for index in range(len(table)) if index not in bad]
    if not keep:
        raise DataValidationError(f"{input_path}: no row can be scored:\n{report.summary()}")
    model, card = load_model(model_dir)
    matrix = parsed.iloc[keep][list(FEATURE_NAMES)].to_numpy(dtype=float)
    predicted = model.predict(matrix)
    scored = table.iloc[keep].assign(
        predicted_mpg=predicted.round(4),
        predicted_l_per_100km=np.asarray(to_l_per_100km(predicted)).round(4),
        outside_training_range=_outside(matrix, card),
    )
    if rejected_path is not None:
        rejections = _rejections(table, report)
        atomic_write(rejected_path, lambda tmp: rejections.to_csv(tmp, index=False))
    atomic_write(output_path, lambda tmp: scored.to_csv(tmp, index=False))
    return Scored(len(scored), len(bad))
