"""``mlops``: one entry point for data, training, pipelines, serving and GitOps commands."""

from __future__ import annotations

import os

import click

from core.cli import publish_command
from core.errors import MlopsError
from gitops.cli import bench_manifests, gitops_group, manifests_group
from monitoring.cli import bench_monitor, ingest_command, monitor_group, remove_source_command
from pipelines.cli import bench_pipeline, pipeline_group
from serving.cli import bench_load, bench_model_option, bench_serve, client_command, serve_command
from training.cli import bench_training, data_group, evaluate_command, gate_command, predict_command, train_command


class OneLineUsageError(click.UsageError):
    """click's usage error, shown as one line (click prints the usage block and a hint first)."""

    def show(self, file=None) -> None:
        hint = f" (see '{self.ctx.command_path} --help')" if self.ctx else ""
        click.echo(f"Error: {self.format_message()}{hint}", err=True)


class MlopsGroup(click.Group):
    """The error contract: the project's typed errors and click's usage errors as one line each.

    Exit status 1 for an error, 2 for a usage error (see ``core.errors`` for the others).
    """

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MlopsError as e:
            raise click.ClickException(str(e)) from e
        except OSError as e:  # a path the user gave cannot be read or written
            where = f": {e.filename}" if e.filename else ""
            raise click.ClickException(f"{e.strerror or e}{where}; check the path and its permissions") from e
        except OneLineUsageError:
            raise
        except click.UsageError as e:
            raise OneLineUsageError(e.format_message(), e.ctx) from e
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as e:  # the last resort: a bug is still one line, the traceback on request
            if os.environ.get("MLOPS_DEBUG"):
                raise
            raise click.ClickException(
                f"unexpected {type(e).__name__}: {e} (a bug: MLOPS_DEBUG=1 shows the traceback for a report)"
            ) from e


@click.group(cls=MlopsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mpg-mlops")
def main():
    """Fuel-consumption model: from experiment to a served, GitOps-managed model.

    \b
    Example:
      mlops data pull && mlops train --out models/candidate
    """


@main.group("bench")
def bench_group():
    """Benchmarks: each compares against a baseline measured in the same run.

    \b
    Example:
      mlops bench training
    """


for command in (
    data_group,
    train_command,
    evaluate_command,
    predict_command,
    gate_command,
    publish_command,
    pipeline_group,
    serve_command,
    client_command,
    manifests_group,
    gitops_group,
    monitor_group,
):
    main.add_command(command)
bench_group.add_command(bench_training)
bench_group.add_command(bench_pipeline)
data_group.add_command(ingest_command)
data_group.add_command(remove_source_command)
bench_group.add_command(bench_serve)
bench_group.add_command(bench_manifests)
bench_group.add_command(bench_monitor)
bench_group.add_command(bench_load)


@bench_group.command("all")
@bench_model_option(help="Model directory the serving, monitor and load benchmarks serve.")
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
      mlops bench all --load-seconds 60 --out BENCHMARKS.md
    """
    from pathlib import Path

    from core.atomic import atomic_write
    from core.benchmarks import markdown, summary_table
    from core.settings import project_root
    from gitops import bench as manifests
    from monitoring import bench as monitor
    from pipelines import bench as pipeline
    from serving import bench as serving
    from serving import loadtest
    from serving.bench import BenchError
    from training.cli import training_section

    model = model_dir.resolve()
    out = Path(out_path)
    runs = {
        "training": lambda: training_section(factors),
        "production pipeline": lambda: pipeline.section(project_root()),
        "serving": lambda: serving.section(model, serve_seconds),
        "manifests": lambda: manifests.section(project_root()),
        "monitor": lambda: monitor.section(model),
        "load": lambda: loadtest.section(model, load_seconds),
    }
    sections = []
    for name, run in runs.items():
        click.echo(f"==> {name}", err=True)
        sections.append(run())
        click.echo(sections[-1].detail, err=True)
    click.echo(summary_table(sections))
    command = f"mlops bench all --factors {factors} --serve-seconds {serve_seconds} --load-seconds {load_seconds}"
    atomic_write(out, lambda tmp: tmp.write_text(markdown(sections, command)))
    click.echo(f"written to {out}", err=True)
    problems = [problem for section in sections for problem in section.problems]
    if problems:
        raise BenchError("; ".join(problems))


if __name__ == "__main__":
    main()
