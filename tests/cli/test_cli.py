"""The `mlops` CLI through click's CliRunner: help, happy paths, and clean failures."""

from __future__ import annotations

import json
import os

import click
import pandas as pd
import pytest
from click.testing import CliRunner

from mlops.cli import main
from tests.conftest import SEED_DATA, one_line_error, run_mlops


def every_command(group: click.Group = main, path: tuple[str, ...] = ()) -> list[list[str]]:
    """The path of every group and command of the CLI, so a new command is covered without editing a list."""
    paths = [list(path)]
    for name, command in sorted(group.commands.items()):
        paths += every_command(command, (*path, name)) if isinstance(command, click.Group) else [[*path, name]]
    return paths


COMMANDS = every_command()


def test_every_command_is_covered():
    assert len(COMMANDS) >= 30 and ["gitops", "bump"] in COMMANDS
    assert not any(path[:1] == ["bench"] for path in COMMANDS), "the benchmarks are python -m bench, not the product's"


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
    assert 0 < metrics["holdout"]["rmse"] < 5
    for plot in ("predicted_vs_actual.png", "l_per_100km.png", "residuals.png"):
        assert (tmp_path / "reports" / "plots" / plot).read_bytes().startswith(b"\x89PNG")

    out = tmp_path / "scored.csv"
    cars = pd.read_csv(SEED_DATA, dtype=str, keep_default_na=False).head(40)
    assert (cars["hp"] == "?").sum() == 1, "one car of these cannot be scored"
    cars.to_csv(tmp_path / "raw.csv", index=False)
    result = run("predict", "--model", model, "--input", tmp_path / "raw.csv", "--output", out)
    assert result.exit_code == 1 and not out.exists(), "strict by default"
    rejected = tmp_path / "rejected.csv"
    result = run("predict", "--model", model, "--input", tmp_path / "raw.csv", "--output", out, "--rejected", rejected)
    assert result.exit_code == 0, result.output
    assert "39 predictions written" in result.output and "1 rejected row(s)" in result.output
    scored = pd.read_csv(out, dtype=str, keep_default_na=False)
    valid = cars[cars["hp"] != "?"]
    assert list(scored.columns) == [*cars.columns, "predicted_mpg", "predicted_l_per_100km", "outside_training_range"]
    assert scored[list(cars.columns)].values.tolist() == valid.values.tolist(), "the input columns are unchanged"
    product = scored["predicted_mpg"].astype(float) * scored["predicted_l_per_100km"].astype(float)
    assert (product.round(1) == 235.2).all()
    [refused] = pd.read_csv(rejected).to_dict("records")
    assert refused["line"] == 32 and "horsepower" in refused["reason"] and refused["name"] == "ford pinto"
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~current_umask())

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
    canonical = canonical[canonical["horsepower"] != "?"]
    canonical["model_year"] = canonical["model_year"].astype(int) + 1900
    canonical.to_csv(tmp_path / "canonical.csv", index=False)
    result = run("predict", "--model", model, "--input", tmp_path / "canonical.csv", "--output", tmp_path / "c.csv")
    assert result.exit_code == 0, result.output
    assert pd.read_csv(tmp_path / "c.csv")["predicted_mpg"].tolist() == scored["predicted_mpg"].astype(float).tolist()


def test_predict_rejects_a_bad_file_cleanly_and_writes_nothing(run, trained_dir, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("cyl,dpl,hp,wght,acc,year,org\n4,97,88,2130,14.5,70,3\n4,97,?,heavy,14.5,70,3\n")
    out = tmp_path / "out.csv"
    result = run("predict", "--model", trained_dir, "--input", bad, "--output", out)
    assert result.exit_code == 1
    assert "line 3, column horsepower" in result.output and "line 3, column weight" in result.output
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


def test_unknown_parameter_is_a_clear_error(tmp_path):
    result = run_mlops("train", "--out", tmp_path / "m", "--data", SEED_DATA, "--set", "train.trees=3")
    assert "--set train.trees=3: train.trees: Extra inputs are not permitted" in one_line_error(result)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("args", [[], ["--env", "staging", "--model-uri", "models/x"]], ids=["neither", "both"])
def test_serve_needs_exactly_one_model_source(run, args):
    result = CliRunner().invoke(main, ["serve", *args])
    assert result.exit_code == 2 and "exactly one of --env or --model-uri" in result.output


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
