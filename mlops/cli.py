"""``mlops``: one entry point for data, training, pipelines, serving and GitOps commands."""

from __future__ import annotations

import click

from core.cli import publish_command
from core.errors import MlopsError
from gitops.cli import bench_manifests, gitops_group, manifests_group
from monitoring.cli import bench_monitor, ingest_command, monitor_group
from pipelines.cli import bench_pipeline, pipeline_group
from serving.cli import bench_load, bench_serve, client_command, serve_command
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
bench_group.add_command(bench_serve)
bench_group.add_command(bench_manifests)
bench_group.add_command(bench_monitor)
bench_group.add_command(bench_load)


if __name__ == "__main__":
    main()
