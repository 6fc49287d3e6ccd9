"""Load the car table, validate it, apply the cleaning policy, split it.

Cleaning policy (also in the README): rows with a missing value (``?``) and exact
duplicate rows are dropped and reported as warnings; nothing is imputed. Any
error (wrong type, outside the domain, disallowed value, missing column) makes the
whole file invalid: nothing is trained on it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import DataValidationError
from core.features import FEATURE_NAMES, TARGET
from core.model_card import md5_file
from training.validation import FIRST_DATA_LINE, ValidationReport, validate_table


@dataclass(frozen=True)
class Dataset:
    """Clean training rows (canonical feature columns + ``mpg``) and where they came from."""

    frame: pd.DataFrame
    path: Path
    md5: str
    report: ValidationReport

    @property
    def X(self) -> pd.DataFrame:
        return self.frame[list(FEATURE_NAMES)]

    @property
    def y(self) -> pd.Series:
        return self.frame[TARGET]


SEPARATORS = {";": "semicolons (a spreadsheet export?)", "\t": "tabs", "|": "vertical bars"}


CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _scan(path: Path, max_rows: int | None) -> None:
    """Before anything parses the table: a NUL or another control character (the parser would cut the cell
    there: ``35\\0garbage`` read as 35) is an error naming its line and column, and so is a file longer than
    ``max_rows`` data rows (parsed, a million rows took 1.7 GB)."""
    try:
        content = Path(path).read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return  # read_csv says it, with the fix
    if found := CONTROL.search(content):
        start = content.rfind(b"\n", 0, found.start()) + 1
        line, column = content.count(b"\n", 0, found.start()) + 1, content.count(b",", start, found.start()) + 1
        raise DataValidationError(
            f"{path}: line {line}, column {column}: a control character (byte {found[0][0]:#04x}) in a cell; "
            "a car table holds text and numbers only"
        )
    if max_rows is not None and (rows := content.rstrip(b"\n").count(b"\n")) > max_rows:
        raise DataValidationError(f"{path}: {rows} data rows, at most {max_rows} at once; split the file")


def read_table(path: Path, max_rows: int | None = None) -> pd.DataFrame:
    """Read a CSV with every cell as a string, so validation sees exactly what the file holds (at most
    ``max_rows`` data rows, when given)."""
    _scan(path, max_rows)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError as e:
        raise DataValidationError(f"{path} not found; run `mlops data pull` to fetch the tracked data") from e
    except pd.errors.EmptyDataError as e:
        raise DataValidationError(f"{path} is empty: expected a header line and data rows") from e
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataValidationError(f"{path} is not a readable CSV: {e}") from e
    if len(table.columns) == 1:
        for separator, name in SEPARATORS.items():
            if separator in table.columns[0]:
                raise DataValidationError(f"{path} separates its columns with {name}; save it with commas (CSV)")
    return table


def require_columns(path: Path, report: ValidationReport, found) -> None:
    """One line for a table whose feature (or target) columns are missing: no row of it can be read."""
    if report.missing_columns:
        shown = ", ".join(map(str, list(found)[:12])) or "none"
        raise DataValidationError(
            f"{path} lacks the column(s) {', '.join(report.missing_columns)} (its columns: {shown}); "
            "name them as the raw data (cyl, dpl, hp, wght, acc, year, org, mpg) or canonically "
            "(cylinders, ..., model_year, origin, mpg)",
            report,
        )


def validate_file(path: Path, require_target: bool = True) -> tuple[pd.DataFrame, ValidationReport]:
    """Read and validate a CSV; returns parsed canonical columns and the report (never raises on bad rows)."""
    return validate_table(read_table(path), require_target=require_target, missing_is_error=not require_target)


def load_dataset(path: Path) -> Dataset:
    """Validated, cleaned training data; raises ``DataValidationError`` with the report when invalid."""
    table = read_table(path)
    parsed, report = validate_table(table, require_target=True)
    require_columns(path, report, table.columns)
    if not report.valid:
        raise DataValidationError(f"{path} is invalid:\n{report.summary()}")
    dropped = [line - FIRST_DATA_LINE for line in report.dropped_lines]
    frame = parsed.drop(index=dropped).reset_index(drop=True)
    return Dataset(frame=frame[[*FEATURE_NAMES, TARGET]], path=Path(path), md5=md5_file(path), report=report)


def row_keys(frame: pd.DataFrame) -> pd.Series:
    """One text per row of features and target: equal cars with equal consumption have equal keys."""
    return frame[[*FEATURE_NAMES, TARGET]].astype(float).map("{:g}".format).agg("|".join, axis=1)


def holdout_split(frame: pd.DataFrame, test_size: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and holdout rows: a row is held out when the hash of its values (and ``seed``) falls
    under ``test_size``.

    A row keeps its side however many rows are added: the model trained on an earlier data
    version has never seen a holdout row of a later one, so the gate's comparison of champion
    and candidate on the holdout is fair. (A shuffled split would move about 80 % of the old
    holdout into training and the champion, scored on rows it was fitted on, would look better
    than any retrained candidate.) Equal rows land on the same side.
    """
    keys = row_keys(frame)
    draws = np.array(
        [int.from_bytes(hashlib.sha256(f"{seed}|{key}".encode()).digest()[:8], "big") for key in keys], dtype=float
    )
    held_out = draws / 2.0**64 < test_size
    return frame[~held_out], frame[held_out]


def holdout_lines(path: Path, test_size: float, seed: int) -> pd.DataFrame:
    """The rows of a data file, as written there, that the split holds out (after the cleaning policy): what
    ``mlops data freeze-holdout`` writes as the trusted evaluation set."""
    table = read_table(path)
    parsed, report = validate_table(table, require_target=True)
    require_columns(path, report, table.columns)
    if not report.valid:
        raise DataValidationError(f"{path} is invalid:\n{report.summary()}")
    kept = parsed.drop(index=[line - FIRST_DATA_LINE for line in report.dropped_lines])
    _, held_out = holdout_split(kept, test_size, seed)
    return table.loc[held_out.index]
