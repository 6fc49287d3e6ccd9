"""Schema checks: each kind of bad cell is reported with its file line and column."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from training.validation import validate_table

HEADER = "mpg,cyl,dpl,hp,wght,acc,year,org,name"
GOOD = "18,8,307,130,3504,12,70,1,chevrolet chevelle malibu"


def table(*rows: str, header: str = HEADER) -> pd.DataFrame:
    return pd.read_csv(io.StringIO("\n".join([header, *rows])), dtype=str, keep_default_na=False)


def test_good_rows_are_valid_and_parsed_to_canonical_units():
    parsed, report = validate_table(table(GOOD, "27,4,97,88,2130,14.5,70,japan,datsun pl510"), require_target=True)
    assert report.valid and report.issues == []
    assert list(parsed.columns[:7]) == [
        "cylinders",
        "displacement",
        "horsepower",
        "weight",
        "acceleration",
        "model_year",
        "origin",
    ]
    assert parsed["model_year"].tolist() == [1970, 1970]
    assert parsed["origin"].tolist() == [1, 3]


@pytest.mark.parametrize(
    ("row", "column", "message"),
    [
        ("18,8,307,abc,3504,12,70,1,x", "horsepower", "is not a number"),
        ("18,7,307,130,3504,12,70,1,x", "cylinders", "must be one of 2, 3, 4"),
        ("18,8,307,130,3504,12,70,7,x", "origin", "must be one of 1, 2, 3"),
        ("18,8,307,130,-5,12,70,1,x", "weight", "must be within [100, 20000] lb"),
        ("18,8,307,130,3504,12,1850,1,x", "model_year", "must be within [1900, 2100]"),
        ("18,8,307,130,3504,12,70.5,1,x", "model_year", "must be a whole number"),
        ("18,8,307,130,3504,inf,70,1,x", "acceleration", "must be a finite number"),
        ("18,8,,130,3504,12,70,1,x", "displacement", "empty"),
        ("0,8,307,130,3504,12,70,1,x", "mpg", "must be within [1, 200] mpg"),
    ],
)
def test_each_bad_cell_is_an_error_naming_line_and_column(row, column, message):
    _, report = validate_table(table(GOOD, row), require_target=True)
    assert not report.valid
    [error] = report.errors
    assert (error.line, error.column) == (3, column)
    assert message in error.message


def test_missing_marker_is_a_warning_for_training_and_an_error_for_prediction():
    rows = (GOOD, "18,8,307,?,3504,12,70,1,x")
    _, training = validate_table(table(*rows), require_target=True)
    assert training.valid and training.dropped_lines == [3]
    _, scoring = validate_table(table(*rows), require_target=False, missing_is_error=True)
    assert [(e.line, e.column) for e in scoring.errors] == [(3, "horsepower")]


def test_exact_duplicates_are_dropped_with_a_warning():
    _, report = validate_table(table(GOOD, GOOD, GOOD), require_target=True)
    assert report.valid and report.dropped_lines == [3, 4]


def test_missing_column_is_named_with_its_raw_name():
    _, report = validate_table(table("18,8,307,130,3504,12,70", header="mpg,cyl,dpl,hp,wght,acc,year"), True)
    assert [(e.line, e.column) for e in report.errors] == [(None, "origin")]
    assert "raw name org" in report.errors[0].message


def test_empty_table_is_invalid():
    _, report = validate_table(table(), require_target=True)
    assert not report.valid


def test_report_summary_and_dict_agree():
    _, report = validate_table(table(GOOD, "18,9,307,130,3504,12,70,1,x"), require_target=True)
    data = report.to_dict()
    assert data["valid"] is False and data["errors"] == 1
    assert "line 3, column cylinders: '9'" in report.summary()


def test_two_digit_years_are_read_only_in_the_raw_year_column():
    """One rule for CSV, V1 and V2: `model_year` is four digits; the raw data's `year` column has two."""
    raw, report = validate_table(table(GOOD.replace(",70,", ",76,")), require_target=True)
    assert report.valid and raw["model_year"].tolist() == [1976]
    canonical_header = "mpg,cylinders,displacement,horsepower,weight,acceleration,model_year,origin,name"
    _, report = validate_table(table(GOOD.replace(",70,", ",76,"), header=canonical_header), require_target=True)
    assert [str(i) for i in report.errors] == [
        "error: line 2, column model_year: '76' must be within [1900, 2100] four-digit year"
    ]
    four, report = validate_table(table(GOOD.replace(",70,", ",1976,"), header=canonical_header), require_target=True)
    assert report.valid and four["model_year"].tolist() == [1976]
