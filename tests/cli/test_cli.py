"""The `mlops` CLI through click's CliRunner: help, happy paths, and clean failures."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from mlops.cli import main
from tests.conftest import SEED_DATA

COMMANDS = [[], ["data"], ["data", "pull"], ["data", "validate"], ["train"], ["evaluate"], ["predict"]]


@pytest.fixture
def run():
    runner = CliRunner()
    return lambda *args: runner.invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "mlops")
def test_every_command_has_help_with_an_example(run, command):
    result = run(*command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.output


def test_validate_accepts_the_starting_data_and_writes_a_report(run, tmp_path):
    result = run("data", "validate", SEED_DATA, "--report", tmp_path / "report.json")
    assert result.exit_code == 0, result.output
    assert "valid: 357 rows, 0 errors, 4 warnings" in result.output
    assert json.loads((tmp_path / "report.json").read_text())["dropped_lines"] == [32, 302, 308, 321]


def test_validate_rejects_bad_rows_by_line_and_column_without_touching_the_file(run, tmp_path):
    bad = tmp_path / "bad.csv"
    lines = SEED_DATA.read_text().splitlines()
    lines[4] = lines[4].replace(",70,1,", ",70,9,")
    bad.write_text("\n".join(lines) + "\n")
    before = bad.read_bytes()
    result = run("data", "validate", bad)
    assert result.exit_code == 1
    assert "line 5, column origin: '9' must be one of 1, 2, 3" in result.output
    assert bad.read_bytes() == before


def test_train_evaluate_predict_round_trip(run, tmp_path):
    model = tmp_path / "model"
    result = run("train", "--out", model, "--data", SEED_DATA, "--set", "train.candidates=[linear, poly_weight_year]")
    assert result.exit_code == 0, result.output
    assert "selected poly_weight_year" in result.output
    result = run("evaluate", "--model", model, "--data", SEED_DATA, "--out", tmp_path / "reports")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    assert metrics["algorithm"] == "poly_weight_year" and 0 < metrics["holdout"]["rmse"] < 5
    for plot in ("predicted_vs_actual.png", "residuals.png"):
        assert (tmp_path / "reports" / "plots" / plot).read_bytes().startswith(b"\x89PNG")

    out = tmp_path / "scored.csv"
    cars = pd.read_csv(SEED_DATA, na_values="?").dropna().head(25)
    cars.to_csv(tmp_path / "raw.csv", index=False)
    result = run("predict", "--model", model, "--input", tmp_path / "raw.csv", "--output", out)
    assert result.exit_code == 0, result.output
    scored = pd.read_csv(out)
    assert len(scored) == 25 and {"mpg_actual", "mpg", "l_per_100km", "name"} <= set(scored.columns)
    assert ((scored["mpg"] * scored["l_per_100km"]).round(1) == 235.2).all()

    canonical = cars.rename(
        columns={
            "cyl": "cylinders",
            "dpl": "displacement",
            "hp": "horsepower",
            "wght": "weight",
            "acc": "acceleration",
            "year": "model_year",
            "org": "origin",
        }
    ).drop(columns=["mpg", "name"])
    canonical["model_year"] += 1900
    canonical.to_csv(tmp_path / "canonical.csv", index=False)
    result = run("predict", "--model", model, "--input", tmp_path / "canonical.csv", "--output", tmp_path / "c.csv")
    assert result.exit_code == 0, result.output
    assert pd.read_csv(tmp_path / "c.csv")["mpg"].tolist() == scored["mpg"].tolist()


def test_predict_rejects_a_bad_file_cleanly_and_writes_nothing(run, trained_dir, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("cyl,dpl,hp,wght,acc,year,org\n4,97,88,2130,14.5,70,3\n4,97,?,heavy,14.5,70,3\n")
    out = tmp_path / "out.csv"
    result = run("predict", "--model", trained_dir, "--input", bad, "--output", out)
    assert result.exit_code == 1
    assert "line 3, column horsepower" in result.output and "line 3, column weight" in result.output
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


def test_unknown_parameter_is_a_clear_error(run, tmp_path):
    result = run("train", "--out", tmp_path / "m", "--data", SEED_DATA, "--set", "train.trees=3")
    assert result.exit_code == 1
    assert "train.trees" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("args", [[], ["--env", "staging", "--model-uri", "models/x"]], ids=["neither", "both"])
def test_serve_needs_exactly_one_model_source(run, args):
    result = CliRunner().invoke(main, ["serve", *args])
    assert result.exit_code == 2 and "exactly one of --env or --model-uri" in result.output
