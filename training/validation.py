"""Schema checks on a table of cars: types, domains, allowed values, the ``?`` marker, duplicates.

Checks are vectorised per column, so a 100x data set validates as fast as it reads.
Errors make the table invalid; warnings mark rows the cleaning policy drops
(missing values, exact duplicates). Nothing here modifies the input.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from core.features import (
    FEATURES,
    MISSING_MARKER,
    ORIGIN_NAMES,
    RAW_TO_CANONICAL,
    TARGET,
    TARGET_DOMAIN,
    canonical_year,
    domain_problems,
)

#: A data row's line in the CSV file: the header is line 1.
FIRST_DATA_LINE = 2
MISSING_DROPPED = "missing value; the row is dropped by cleaning"
MISSING_TO_SCORE = "is the missing-value marker: scoring a car needs all seven features"
FORMULA = r"[=+\-@]"  # how a spreadsheet formula starts (CSV injection)
FORMULA_MESSAGE = "starts like a spreadsheet formula (= + - @): not a car name"


@dataclass(frozen=True)
class Issue:
    """One finding: the file line (None for a whole column), the column, the value and what is wrong."""

    line: int | None
    column: str
    value: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "header"
        shown = f" {self.value!r}" if self.value else ""
        return f"{self.severity}: {where}, column {self.column}:{shown} {self.message}"


@dataclass
class ValidationReport:
    """All findings for one table plus the line numbers the cleaning policy drops."""

    rows: int
    issues: list[Issue] = field(default_factory=list)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def valid(self) -> bool:
        return not self.errors

    @property
    def missing_columns(self) -> list[str]:
        """Columns the table should have and does not (whole-file problems: no row can be read)."""
        missing = {i.column for i in self.issues if i.line is None and i.message.startswith("column is missing")}
        return [name for name in (*(f.name for f in FEATURES), TARGET) if name in missing]

    @property
    def dropped_lines(self) -> list[int]:
        return sorted({i.line for i in self.issues if i.severity == "warning" and i.line is not None})

    def to_dict(self) -> dict:
        return {
            "valid": self.valid,
            "rows": self.rows,
            "errors": len(self.errors),
            "warnings": len(self.issues) - len(self.errors),
            "dropped_lines": self.dropped_lines,
            "issues": [asdict(i) for i in self.issues],
        }

    def summary(self, limit: int = 50) -> str:
        lines = [str(i) for i in self.issues[:limit]]
        if len(self.issues) > limit:
            lines.append(f"... and {len(self.issues) - limit} more (see the JSON report)")
        verdict = "valid" if self.valid else "INVALID"
        warnings = len(self.issues) - len(self.errors)
        dropped = f", {warnings} warnings, {len(self.dropped_lines)} rows dropped by cleaning" if warnings else ""
        lines.append(f"{verdict}: {self.rows} rows, {len(self.errors)} errors{dropped}")
        return "\n".join(lines)


def canonical_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Rename raw column names (``cyl``, ``wght``, ...) to canonical ones; other names are kept."""
    return table.rename(columns={c: RAW_TO_CANONICAL.get(c.strip(), c.strip()) for c in table.columns})


def _numbers(text: pd.Series, feature_name: str, two_digit_years: bool) -> pd.Series:
    if feature_name == "origin":
        text = text.str.lower().map(lambda v: str(ORIGIN_NAMES.get(v, v)))
    values = pd.to_numeric(text, errors="coerce").astype(float)
    return values.map(canonical_year) if feature_name == "model_year" and two_digit_years else values


def _parse_column(
    text: pd.Series, name: str, missing_is_error: bool, two_digit_years: bool, issues: list[Issue]
) -> pd.Series:
    """Parse one column to float, appending an issue per cell that is not a number; those become NaN."""
    values = _numbers(text, name, two_digit_years)
    missing = text == MISSING_MARKER
    missing_message = MISSING_TO_SCORE if missing_is_error else MISSING_DROPPED
    problems = {
        missing_message: missing,
        "is empty; write ? for a missing value": text == "",
        "is not a number": values.isna() & ~missing & (text != ""),
    }
    if name == TARGET:
        low, high = TARGET_DOMAIN
        problems["must be a finite number"] = np.isinf(values)
        problems[f"must be within [{low:g}, {high:g}] mpg"] = np.isfinite(values) & ~values.between(low, high)
    for message, mask in problems.items():
        severity = "warning" if message == MISSING_DROPPED else "error"
        for index in np.flatnonzero(mask.to_numpy()):
            issues.append(Issue(int(index) + FIRST_DATA_LINE, name, text.iat[index], message, severity))
    return values.where(~np.asarray(list(problems.values())).any(axis=0))


def _check_domains(parsed: dict[str, pd.Series], text: pd.DataFrame, issues: list[Issue]) -> None:
    """The feature domains of ``core.features`` (the same checks the predictor applies); bad cells become NaN."""
    features = [f for f in FEATURES if f.name in parsed]
    if not features:
        return  # every feature column is missing: already reported, nothing to check
    matrix = np.column_stack([parsed[f.name].to_numpy() for f in features])
    for row, name, message in domain_problems(matrix, features):
        if np.isnan(parsed[name].iat[row]):
            continue  # already reported as missing or not a number
        issues.append(Issue(row + FIRST_DATA_LINE, name, text[name].iat[row], message))
        parsed[name].iat[row] = np.nan


def validate_table(
    table: pd.DataFrame, require_target: bool, missing_is_error: bool = False
) -> tuple[pd.DataFrame, ValidationReport]:
    """Check a table read as strings; return the parsed canonical columns and the report.

    Args:
        table: the CSV read with every cell as a string (raw or canonical column names).
        require_target: training data must carry ``mpg`` (and duplicates are dropped);
            prediction input need not, and a repeated car is scored twice.
        missing_is_error: prediction input cannot skip a row, so ``?`` is an error there.
    """
    # The raw data's `year` column holds two digits (70 = 1970); `model_year` is four digits, as in the API.
    two_digit_years = "year" in {c.strip() for c in table.columns}
    table = canonical_columns(table)
    report = ValidationReport(rows=len(table))
    issues = report.issues
    if table.empty:
        issues.append(Issue(None, "*", "", "the table has no data rows"))
        return pd.DataFrame(), report
    parsed = {}
    wanted = [(f.name, f) for f in FEATURES] + ([(TARGET, None)] if require_target else [])
    text = table.astype(str).apply(lambda column: column.str.strip())
    for name, feature in wanted:
        if name not in table.columns:
            raw = f" (raw name {feature.raw_name})" if feature else ""
            issues.append(Issue(None, name, "", f"column is missing{raw}"))
            continue
        parsed[name] = _parse_column(text[name], name, missing_is_error, two_digit_years, issues)
    _check_domains(parsed, text, issues)
    if "name" in text.columns:  # free text: a spreadsheet would run a formula written there
        for index in np.flatnonzero(text["name"].str.match(FORMULA).to_numpy()):
            issues.append(Issue(int(index) + FIRST_DATA_LINE, "name", text["name"].iat[index], FORMULA_MESSAGE))
    duplicated = table.duplicated(keep="first").to_numpy() if require_target else []
    for index in np.flatnonzero(duplicated):
        issues.append(Issue(int(index) + FIRST_DATA_LINE, "*", "", "exact duplicate of an earlier row", "warning"))
    issues.sort(key=lambda i: (i.line or 0, i.column))
    return pd.DataFrame(parsed, index=table.index), report
