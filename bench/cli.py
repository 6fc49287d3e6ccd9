"""``python -m bench``: every benchmark, each against a baseline measured in the same run.

Registered by ``mlops`` when the ``bench`` package is present (a development checkout: ``make install``); the
image carries neither it nor its harnesses.
"""

from __future__ import annotations

from pathlib import Path

import click

from infra.cli import MlopsGroup
from infra.settings import project_root


def model_option(help: str):
    """``--model DIR`` of the benchmarks that serve a model (a ``Path``; ``dvc repro`` makes the default)."""
    return click.option(
        "--model",
        "model_dir",
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        default="models/candidate",
        show_default=True,
        help=help,
    )


@click.group("bench", cls=MlopsGroup, context_settings={"help_option_names": ["-h", "--help"]})
def bench_group():
    """Benchmarks: each compares against a baseline measured in the same run.

    \b
    Example:
      python -m bench training
    """


def training_section(factors: str = "1,10,100", skip_pipeline: bool = False):
    from bench.training import section
    from training.data import load_dataset
    from training.params import load_params

    params = load_params(project_root() / "params.yaml")
    sizes = tuple(int(f) for f in factors.split(","))
    return section(load_dataset(project_root() / params.data.path), params, sizes, skip_pipeline)


@bench_group.command("training")
@click.option("--factors", default="1,10,100", show_default=True, help="Data sizes, as multiples of the data.")
@click.option("--skip-pipeline", is_flag=True, help="Only the fit-time table.")
def bench_training(factors, skip_pipeline):
    """Benchmark: experimental pipeline end to end, and fit time per candidate as the data grows.

    \b
    Example:
      python -m bench training --factors 1,10
    """
    click.echo(training_section(factors, skip_pipeline).detail)


@bench_group.command("pipeline")
@click.option("--runs", default=2, show_default=True, help="Runs of the whole pipeline to average.")
def bench_pipeline(runs):
    """Benchmark: the compiled pipeline end to end with kfp.local, per step, against its start-up floor.

    \b
    Example:
      python -m bench pipeline --runs 3
    """
    from bench.pipeline import section

    click.echo(section(project_root(), runs).detail)


@bench_group.command("serve")
@model_option(help="Model directory every server serves.")
@click.option("--seconds", default=5, show_default=True, help="Duration of each measured wrk run.")
@click.option("--rounds", default=3, show_default=True, help="Interleaved rounds; figures are medians.")
def bench_serve(model_dir, seconds, rounds):
    """Benchmark: this predictor vs MLServer, a generic scikit-learn predictor and a trivial model, V1 and V2
    (wrk, 16 connections); time to ready and the size of the serving-only, full and MLServer installs.

    \b
    Example:
      python -m bench serve --seconds 5
    """
    from bench.serving import section

    click.echo(section(model_dir.resolve(), seconds, rounds).detail)


@bench_group.command("profile")
@model_option(help="Model directory the predictor serves.")
@click.option("--seconds", default=10, show_default=True, type=click.IntRange(1, 600), help="Seconds sampled.")
@click.option("--protocol", type=click.Choice(["V1", "V2"]), default="V1", show_default=True)
def bench_profile(model_dir, seconds, protocol):
    """Where the predictor's time goes under wrk's load: py-spy --native on the running server (not a figure).

    \b
    Example:
      python -m bench profile --protocol V2
    """
    from bench.serving import profile

    click.echo(profile(model_dir.resolve(), seconds, protocol))


@bench_group.command("load")
@model_option(help="Model directory the predictor serves.")
@click.option("--seconds", default=60, show_default=True, type=click.IntRange(1, 3600), help="Each of the four runs.")
def bench_load(model_dir, seconds):
    """Load: the predictor through nginx and the monitor's ingest, 64 connections, alone and with malformed requests.

    Exit 1 when a good request was not answered 2xx, a malformed one was answered 5xx
    or accepted, or a server's resident memory grew by 10 % or more.

    \b
    Example:
      python -m bench load --seconds 60
    """
    from bench.load import section
    from bench.serving import BenchError

    result = section(model_dir.resolve(), seconds)
    click.echo(result.detail)
    if result.problems:
        raise BenchError("; ".join(result.problems))


@bench_group.command("manifests")
@click.option("--runs", default=5, show_default=True, help="Timed runs; figures are medians.")
def bench_manifests(runs):
    """Benchmark: `mlops manifests validate` over every tree against rendering alone (kustomize).

    \b
    Example:
      python -m bench manifests --runs 5
    """
    from bench.manifests import section

    click.echo(section(project_root(), runs).detail)


@bench_group.command("monitor")
@model_option(help="Model directory the predictor serves and the events name.")
@click.option("--seconds", default=5, show_default=True, type=click.IntRange(1, 600), help="Each wrk run.")
@click.option("--rows", default=100_000, show_default=True, type=click.IntRange(1), help="Predictions to report on.")
def bench_monitor(model_dir, seconds, rows):
    """Benchmark: monitor ingest vs the predictor's request rate (SQLite, PostgreSQL), and the report's cost.

    PostgreSQL is a throwaway local cluster (Debian's postgresql package; skipped, and
    said, when it is not installed).

    \b
    Example:
      python -m bench monitor --seconds 5
    """
    from bench.monitor import section

    click.echo(section(model_dir.resolve(), seconds, rows).detail)


@bench_group.command("all")
@model_option(help="Model directory the serving, monitor and load benchmarks serve.")
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False),
    default="BENCHMARKS.md",
    show_default=True,
    help="The Markdown file the figures go to (replaced whole).",
)
@click.option("--factors", default="1,10,100", show_default=True, help="Training data sizes, as multiples.")
@click.option("--serve-seconds", default=5, show_default=True, type=click.IntRange(1, 600), help="Each serving run.")
@click.option("--load-seconds", default=60, show_default=True, type=click.IntRange(1, 3600), help="Each load run.")
def bench_all(model_dir, out_path, factors, serve_seconds, load_seconds):
    """Every benchmark in turn; one table of figures against their baselines, written to BENCHMARKS.md.

    Exit 1 when a load run missed a target (the file is written first, with the problem).

    \b
    Example:
      python -m bench all --load-seconds 60 --out BENCHMARKS.md
    """
    from bench import load, manifests, monitor, pipeline, serving
    from bench.figures import markdown, summary_table
    from bench.serving import BenchError
    from core.atomic import atomic_write

    model = model_dir.resolve()
    out = Path(out_path)
    runs = {
        "training": lambda: training_section(factors),
        "production pipeline": lambda: pipeline.section(project_root()),
        "serving": lambda: serving.section(model, serve_seconds),
        "manifests": lambda: manifests.section(project_root()),
        "monitor": lambda: monitor.section(model),
        "load": lambda: load.section(model, load_seconds),
    }
    sections = []
    for name, run in runs.items():
        click.echo(f"==> {name}", err=True)
        sections.append(run())
        click.echo(sections[-1].detail, err=True)
    click.echo(summary_table(sections))
    command = f"python -m bench all --factors {factors} --serve-seconds {serve_seconds} --load-seconds {load_seconds}"
    atomic_write(out, lambda tmp: tmp.write_text(markdown(sections, command)))
    click.echo(f"written to {out}", err=True)
    problems = [problem for section in sections for problem in section.problems]
    if problems:
        raise BenchError("; ".join(problems))
