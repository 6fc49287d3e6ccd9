"""Commands for data, training, evaluation and batch prediction (wired into ``mlops`` by ``mlops.cli``)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from core.atomic import atomic_write
from core.errors import EXIT_ERROR, EXIT_GATE_REJECTED
from infra.cli import CHAMPION, current_project, pass_project

EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
EXISTING_DIR = click.Path(exists=True, file_okay=False, path_type=Path)
OUT_PATH = click.Path(path_type=Path)

params_option = click.option(
    "--params",
    "params_path",
    type=EXISTING_FILE,
    default=None,
    help="Parameters file [default: params.yaml at the project root].",
)
set_option = click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a parameter, e.g. train.cv_folds=3."
)
data_option = click.option(
    "--data", "data_path", type=EXISTING_FILE, default=None, help="Training CSV [default: data.path in params]."
)


def _params(params_path: Path | None, overrides=()):
    from training.params import load_params

    return load_params(params_path or current_project().root / "params.yaml", overrides)


def _dataset(params, data_path: Path | None):
    from training.data import load_dataset

    return load_dataset(data_path or current_project().root / params.data.path)


@click.group("data")
def data_group():
    """Fetch and check the versioned data.

    \b
    Example:
      mlops data pull && mlops data validate
    """


@data_group.command("pull")
@click.option("--remote", default=None, help="DVC remote name [default: the repo's default, a local folder].")
@pass_project
def data_pull(project, remote):
    """Fetch the DVC-tracked data and the committed experiment outputs; restore the shipped models.

    The models the overlays name (data/models, committed) are checked against their
    ids and published into the local model store, so a fresh clone serves, gates
    against and reports on them offline.

    \b
    Example:
      mlops data pull                # from the committed local remote
      mlops data pull --remote s3    # from S3 (credentials from the environment)
    """
    from infra.shipped import restore
    from infra.store import LocalBackend
    from training.versioning import pull, pull_targets

    click.echo(pull(project.root, pull_targets(_params(None)), remote).summary())
    store = project.store
    if not isinstance(store.backend, LocalBackend):
        click.echo("shipped models (data/models) not copied: the store is S3 (MLOPS_S3_ENDPOINT_URL)")
        return
    restored = restore(project.root, store)
    if restored:
        new = sum(r.created for r in restored)
        ids = ", ".join(r.uri.model_id[:12] for r in restored)
        click.echo(f"shipped models {ids} verified; {new} restored into the local store {store.backend.root}")


@data_group.command("freeze-holdout")
@click.option(
    "--source", type=EXISTING_FILE, default=None, help="Rows to take it from [default: data/seed/auto-mpg.csv]."
)
@params_option
def freeze_holdout_command(source, params_path):
    """Write the trusted evaluation set: the rows of SOURCE the split holds out, to data.trusted_holdout.

    The gate judges candidates on it, and no ingest changes it. Change it only in a
    merge request of its own, reviewed (CODEOWNERS on data/trusted/); then `dvc add`
    the file and push its object.

    \b
    Example:
      mlops data freeze-holdout && dvc add data/trusted/holdout.csv && dvc push data/trusted/holdout.csv.dvc
    """
    from training.data import holdout_lines

    params = _params(params_path)
    source = source or current_project().root / "data" / "seed" / "auto-mpg.csv"
    rows = holdout_lines(source, params.split.test_size, params.split.seed)
    out = current_project().root / params.data.trusted_holdout
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: rows.to_csv(tmp, index=False, lineterminator="\n"))
    click.echo(f"{len(rows)} held-out rows of {source} -> {params.data.trusted_holdout}")


@data_group.command("validate")
@click.argument("path", type=EXISTING_FILE, required=False)
@click.option("--report", "report_path", type=OUT_PATH, help="Also write the findings as JSON.")
@click.option("--features-only", is_flag=True, help="Input for prediction: no mpg column, ? is an error.")
def data_validate(path, report_path, features_only):
    """Check a car table: types, ranges, allowed values, ? markers, duplicates.

    Prints one line per finding (file line and column) and exits 1 when the data is
    invalid. The file is never modified.

    \b
    Example:
      mlops data validate data/auto-mpg.csv --report reports/validation.json
    """
    from training.data import validate_file

    path = path or current_project().root / _params(None).data.path
    _, report = validate_file(path, require_target=not features_only)
    if report_path:
        atomic_write(report_path, lambda tmp: tmp.write_text(json.dumps(report.to_dict(), indent=2) + "\n"))
    click.echo(report.summary())
    if not report.valid:
        raise SystemExit(EXIT_ERROR)


@click.command("train")
@click.option("--out", "out_dir", type=OUT_PATH, required=True, help="Model directory to write.")
@data_option
@params_option
@set_option
def train_command(out_dir, data_path, params_path, overrides):
    """Select the best candidate by cross-validation and save it as a model directory.

    \b
    Example:
      mlops train --out models/candidate --set train.cv_folds=3
    """
    from core.model_card import check_model_dir_target
    from training.train import train

    check_model_dir_target(out_dir)  # before minutes of training, not after
    params = _params(params_path, overrides)
    dataset = _dataset(params, data_path)
    click.echo(f"cross-validating {len(params.train.candidates)} candidate(s), {params.train.cv_folds} folds:")

    def progress(score) -> None:
        click.echo(f"  {score.name:<18} CV RMSE {score.cv_rmse_mean:.3f} ± {score.cv_rmse_std:.3f}")

    card = train(dataset, params, out_dir, progress)
    click.echo(f"selected {card.algorithm}: CV RMSE {card.metrics.cv_rmse_mean:.3f} mpg")
    click.echo(f"model {card.id[:12]} written to {out_dir}")


@click.command("evaluate")
@click.option("--model", "model_dir", type=EXISTING_DIR, required=True, help="Model directory.")
@click.option("--out", "out_dir", type=OUT_PATH, required=True, help="Folder for metrics.json, plots.")
@data_option
@params_option
def evaluate_command(model_dir, out_dir, data_path, params_path):
    """Score a model on the held-out rows and the trusted holdout; write metrics.json, predictions.csv, plots.

    \b
    Example:
      mlops evaluate --model models/candidate --out reports
    """
    from training.data import load_dataset
    from training.evaluate import evaluate

    params = _params(params_path)
    trusted_path = current_project().root / params.data.trusted_holdout
    trusted = load_dataset(trusted_path) if trusted_path.is_file() else None
    metrics = evaluate(model_dir, _dataset(params, data_path), params, out_dir, trusted)
    h = metrics["holdout"]
    click.echo(f"holdout RMSE {h['rmse']:.3f}  MAE {h['mae']:.3f}  R² {h['r2']:.3f}  -> {out_dir}")
    if trusted is not None:
        t = metrics["trusted_holdout"]
        click.echo(f"trusted holdout RMSE {t['rmse']:.3f}  MAE {t['mae']:.3f}  R² {t['r2']:.3f}")


@click.command("predict")
@click.option("--model", "model_dir", type=EXISTING_DIR, required=True, help="Model directory.")
@click.option("--input", "input_path", type=EXISTING_FILE, required=True, help="CSV of cars (raw or canonical names).")
@click.option("--output", "output_path", type=OUT_PATH, required=True, help="CSV to write (input + predictions).")
@click.option(
    "--rejected",
    "rejected_path",
    type=OUT_PATH,
    help="Score the valid rows and write the others here, with their line and reason [default: stop at a bad row].",
)
def predict_command(model_dir, input_path, output_path, rejected_path):
    """Predict fuel consumption for every row of a CSV.

    The output is the input, unchanged, plus predicted_mpg, predicted_l_per_100km and
    outside_training_range. By default a bad cell (a ? too) stops the command with its
    line and column, and nothing is written; with --rejected the valid rows are scored.

    \b
    Example:
      mlops predict --model models/candidate --input data/auto-mpg.csv --output predictions.csv \\
        --rejected rejected.csv
    """
    from training.predict import predict_file

    scored = predict_file(model_dir, input_path, output_path, rejected_path)
    rejected = f"; {scored.rejected} rejected row(s) written to {rejected_path}" if rejected_path else ""
    click.echo(f"{scored.predicted} predictions written to {output_path}{rejected}")


@click.command("gate")
@click.option("--candidate", "candidate_dir", type=EXISTING_DIR, required=True, help="Candidate model directory.")
@click.option(
    "--champion",
    "champion_uri",
    type=CHAMPION,
    default=None,
    help="The model to beat: a model URI or directory, or staging / production (what that overlay serves).",
)
@click.option("--report", "report_path", type=OUT_PATH, default=None, help="Write the decision as JSON.")
@data_option
@click.option(
    "--trusted",
    "trusted_path",
    type=EXISTING_FILE,
    default=None,
    help="The trusted holdout CSV the rules judge on [default: data.trusted_holdout in params].",
)
@params_option
@pass_project
def gate_command(project, candidate_dir, champion_uri, report_path, data_path, trusted_path, params_path):
    """Decide whether a candidate may replace the champion; exit 0 passed, 3 rejected (1: an error).

    Rules live in params.yaml (gate): absolute thresholds and no regression against
    the champion, both on the trusted holdout (data.trusted_holdout: frozen seed rows
    no ingest changes), and behavioural checks; the rolling holdout of the current
    data is reported beside it. Without a champion only the absolute and behavioural
    rules apply.

    \b
    Example:
      mlops gate --candidate models/candidate --champion s3://mpg-mlops/models/mpg/<id>/
    """
    from training.data import load_dataset
    from training.gate import SEED, run_gate

    params = _params(params_path)
    champion_uri = project.model_ref(champion_uri) if champion_uri else None
    champion_dir, champion_id = project.resolve(champion_uri) if champion_uri else (None, None)
    champion = str(champion_uri) if champion_uri else None
    trusted = load_dataset(trusted_path or current_project().root / params.data.trusted_holdout)
    seed = load_dataset(current_project().root / SEED)
    report = run_gate(
        candidate_dir, _dataset(params, data_path), params, trusted, champion_dir, champion, champion_id, seed
    )
    if report_path:
        atomic_write(report_path, lambda tmp: tmp.write_text(json.dumps(report.to_dict(), indent=2) + "\n"))
    click.echo(report.table())
    if not report.passed:
        click.echo(f"rejected by the gate: {'; '.join(report.reasons)}", err=True)
        raise SystemExit(EXIT_GATE_REJECTED)
