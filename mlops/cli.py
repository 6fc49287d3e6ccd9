"""``mlops``: one entry point for data, training, pipelines, serving and GitOps commands."""

from __future__ import annotations

import click

from gitops.cli import gitops_group, manifests_group, up_command
from gitops.cluster_cli import cluster_group
from infra.cli import MlopsGroup, publish_command
from monitoring.cli import ingest_command, monitor_group, remove_source_command
from pipelines.cli import pipeline_group
from serving.cli import client_command, serve_command
from training.cli import data_group, evaluate_command, gate_command, predict_command, train_command


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


if __name__ == "__main__":
    main()
