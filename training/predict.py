"""Batch prediction on a CSV of cars (raw or canonical column names)."""

from __future__ import annotations

from pathlib import Path

from core.atomic import atomic_write
from core.errors import DataValidationError
from core.features import FEATURE_NAMES, TARGET, to_l_per_100km
from core.model_card import load_model
from training.data import read_table
from training.validation import validate_table


def predict_file(model_dir: Path, input_path: Path, output_path: Path) -> int:
    """Write ``input`` plus ``mpg`` and ``l_per_100km`` columns to ``output``; returns the row count.

    The input is validated first: any bad cell raises ``DataValidationError`` naming its
    line and column, and no output file is written. An input ``mpg`` column (observed
    values) is kept as ``mpg_actual``.
    """
    table = read_table(input_path)
    parsed, report = validate_table(table, require_target=False, missing_is_error=True)
    if not report.valid:
        raise DataValidationError(f"{input_path} cannot be scored:\n{report.summary()}", report)
    model, _ = load_model(model_dir)
    predicted = model.predict(parsed[list(FEATURE_NAMES)].to_numpy())
    if TARGET in table.columns:
        table = table.rename(columns={TARGET: f"{TARGET}_actual"})
    scored = table.assign(mpg=predicted.round(4), l_per_100km=to_l_per_100km(predicted).round(4))
    atomic_write(output_path, lambda tmp: scored.to_csv(tmp, index=False))
    return len(scored)
