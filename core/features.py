"""The feature schema every part of the project shares: names, order, units, domains.

The raw Auto MPG file uses short column names (``cyl``, ``wght``, ...) and two-digit
model years; everything downstream of loading uses the canonical names and
four-digit years defined here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: mpg * l_per_100km == 235.214583 (US gallon, statute mile).
MPG_L100KM_FACTOR = 235.214583
TARGET = "mpg"
MISSING_MARKER = "?"


@dataclass(frozen=True)
class Feature:
    """One model input: its canonical name, raw-data column, unit and valid domain."""

    name: str
    raw_name: str
    unit: str
    minimum: float
    maximum: float
    allowed: tuple[float, ...] | None = None
    integer: bool = False


# Domains are physical plausibility, not the training range: a 12-cylinder car is
# valid input (the model card's training ranges flag it as extrapolation).
FEATURES: tuple[Feature, ...] = (
    Feature("cylinders", "cyl", "count", 2, 16, allowed=(2, 3, 4, 5, 6, 8, 10, 12, 16), integer=True),
    Feature("displacement", "dpl", "cubic inches", 1, 1000),
    Feature("horsepower", "hp", "hp", 1, 2000),
    Feature("weight", "wght", "lb", 100, 20000),
    Feature("acceleration", "acc", "s (0-60 mph)", 1, 60),
    Feature("model_year", "year", "four-digit year", 1900, 2100, integer=True),
    Feature("origin", "org", "1 = USA, 2 = Europe, 3 = Japan", 1, 3, allowed=(1, 2, 3), integer=True),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
FEATURES_BY_NAME: dict[str, Feature] = {f.name: f for f in FEATURES}
TARGET_DOMAIN = (1.0, 200.0)  # mpg
RAW_TO_CANONICAL: dict[str, str] = {f.raw_name: f.name for f in FEATURES}
ORIGIN_NAMES: dict[str, int] = {"usa": 1, "europe": 2, "japan": 3}


def canonical_year(year: float) -> float:
    """The four-digit model year of a value in the raw data's ``year`` column, where 70 means 1970.

    The one place two digits are read: ``model_year`` (CSV, V1, V2) is always four digits.
    """
    return year + 1900 if 0 <= year < 100 else year


def to_l_per_100km(mpg: np.ndarray | float) -> np.ndarray | float:
    """Convert miles per US gallon to litres per 100 km."""
    return np.divide(MPG_L100KM_FACTOR, mpg)


_LOW = np.array([f.minimum for f in FEATURES])
_HIGH = np.array([f.maximum for f in FEATURES])
_WHOLE = np.array([f.integer for f in FEATURES])
_ALLOWED = [(j, np.array(f.allowed)) for j, f in enumerate(FEATURES) if f.allowed]


_BOUNDS = [(f.minimum, f.maximum, f.integer, f.allowed) for f in FEATURES]


def _row_valid(row) -> bool:
    """Plain Python for a single car: cheaper than any numpy call on a 1 x 7 array."""
    for value, (low, high, whole, allowed) in zip(row, _BOUNDS, strict=True):
        if not low <= value <= high or (whole and value % 1) or (allowed and value not in allowed):
            return False  # NaN fails the first comparison
    return True


def _all_valid(matrix: np.ndarray) -> bool:
    """One pass over the whole matrix: the common case on the serving hot path."""
    if len(matrix) == 1:
        return _row_valid(matrix[0].tolist())
    if not (np.all(matrix >= _LOW) and np.all(matrix <= _HIGH)):  # also False for NaN
        return False
    if np.any(matrix[:, _WHOLE] % 1 != 0):
        return False
    return all(np.all((matrix[:, [j]] == allowed).any(axis=1)) for j, allowed in _ALLOWED)


def domain_problems(matrix: np.ndarray, features: Sequence[Feature] = FEATURES) -> list[tuple[int, str, str]]:
    """(row, feature, message) for every cell of an (n, 7) float matrix outside its feature's domain.

    ``features`` names the matrix's columns when it holds only some of them (a table
    with a missing column still gets its other columns checked).

    Non-finite values, values outside [minimum, maximum], values not among the allowed
    ones, fractional counts. A valid matrix costs one vectorised pass (serving hot path);
    the per-feature report is built only when something is wrong.
    """
    if features is FEATURES and _all_valid(matrix):
        return []
    problems = []
    finite = np.isfinite(matrix)
    for column, feature in enumerate(features):
        values, ok = matrix[:, column], finite[:, column]
        checks = [(~ok, "must be a finite number")]
        if feature.allowed:
            allowed = ", ".join(f"{a:g}" for a in feature.allowed)
            checks.append((ok & ~np.isin(values, feature.allowed), f"must be one of {allowed}"))
        else:
            outside = ok & ((values < feature.minimum) | (values > feature.maximum))
            checks.append((outside, f"must be within [{feature.minimum:g}, {feature.maximum:g}] {feature.unit}"))
        if feature.integer and not feature.allowed:
            checks.append((ok & (values % 1 != 0), "must be a whole number"))
        for mask, message in checks:
            problems.extend((int(row), feature.name, message) for row in np.flatnonzero(mask))
    return sorted(problems)
