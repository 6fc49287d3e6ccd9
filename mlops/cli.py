"""``mlops``: one entry point for data, training, pipelines, serving and GitOps commands."""

from __future__ import annotations

import click

from core.errors import MlopsError
from gitops.cli import gitops_group, manifests_group, up_command
from gitops.cluster_cli import cluster_group
from infra.cli import publish_command
from monitoring.cli import ingest_command, monitor_group, remove_source_command
from pipelines.cli import pipeline_group
from serving.cli import client_command, serve_command
from training.cli import data_group, evaluate_command, gate_command, predict_command, train_command


class OneLineUsageError(click.UsageError):
    """click's usage error, shown as one line (click prints the usage block and a hint first)."""

    def show(self, file=None) -> None:
        hint = f" (see '{self.ctx.command_path} --help')" if self.ctx else ""
        click.echo(f"Error: {self.format_message()}{hint}", err=True)


def _debug() -> bool:
    """MLOPS_DEBUG, read without failing: this runs while an error is being reported."""
    from infra.settings import Settings

    try:
        return Settings().debug
    except ValueError:
        return False


class MlopsGroup(click.Group):
    """The error contract: the project's typed errors and click's usage errors as one line each.

    Exit status 1 for an error, 2 for a usage error (see ``core.errors`` for the others).
    """

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MlopsError as e:
            # An error raised with context beside its message (DataValidationError(message, report)) would
            # print as the tuple of both: its message is the first argument.
            raise click.ClickException(str(e.args[0]) if e.args else type(e).__name__) from e
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
            if _debug():
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
    cluster_group,
    up_command,
    monitor_group,
):
    main.add_command(command)
data_group.add_command(ingest_command)
data_group.add_command(remove_source_command)


def _add_benchmarks(group: click.Group) -> None:
    """``mlops bench``, where the ``bench`` package is (a development checkout; not in the image)."""
    try:
        from bench.cli import bench_group
    except ModuleNotFoundError as e:
        if e.name != "bench":
            raise
        return
    group.add_command(bench_group)


_add_benchmarks(main)


if __name__ == "__main__":
    main()
