"""``mlops pipeline``: compile, run locally, submit to Kubeflow."""

from __future__ import annotations

import json
from pathlib import Path

import click

from core.atomic import atomic_write
from core.errors import EXIT_ERROR, EXIT_GATE_REJECTED
from infra.cli import current_project


def parse_assignments(items: tuple[str, ...], ir_path: Path) -> dict:
    """``key=value`` pairs with YAML values (so ``params_overrides=[train.cv_folds=3]`` is a list), checked
    against the compiled pipeline's inputs: a bad one is a usage error here, not a failure inside the run."""
    import yaml

    from core.errors import MlopsError
    from pipelines.local import check_arguments, declared_parameters

    declared = declared_parameters(ir_path)
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not of the form name=value", param_hint="--param")
        try:
            parsed = yaml.safe_load(value) if value else ""
        except yaml.YAMLError as e:
            message = f"{item!r}: the value is not valid YAML ({e.problem})"
            raise click.BadParameter(message, param_hint="--param") from e
        if declared.get(key, {}).get("parameterType") == "STRING" and not isinstance(parsed, dict | list):
            parsed = value  # as given: a revision like 1234 or a URI stays the text it was
        result[key] = parsed
    try:
        check_arguments(ir_path, result)
    except MlopsError as e:
        raise click.BadParameter(str(e), param_hint="--param") from e
    return result


param_option = click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="Pipeline parameter, e.g. champion_uri=s3://... or params_overrides='[train.cv_folds=3]'.",
)


@click.group("pipeline")
def pipeline_group():
    """The production pipeline (Kubeflow Pipelines v2).

    \b
    Example:
      mlops pipeline compile --check && mlops pipeline run
    """


@pipeline_group.command("compile")
@click.option("--check", is_flag=True, help="Exit 1 if the committed compiled files are stale; write nothing.")
def compile_command(check):
    """Compile pipelines/production-pipeline.yaml and the KFP Pipeline/PipelineVersion manifests.

    \b
    Example:
      mlops pipeline compile          # after changing pipelines/ or a component
      mlops pipeline compile --check  # in CI
    """
    from pipelines.compile import check_compiled, write_compiled

    root = current_project().root
    if check:
        stale = check_compiled(root)
        for path in stale:
            click.echo(f"stale: {path} (run `mlops pipeline compile` and commit)", err=True)
        if stale:
            raise SystemExit(EXIT_ERROR)
        click.echo("compiled pipeline is up to date")
        return
    changed = write_compiled(root)
    click.echo("\n".join(f"wrote {p}" for p in changed) or "compiled pipeline is up to date")


@pipeline_group.command("run")
@param_option
@click.option("--summary-json", type=click.Path(path_type=Path), help="Write the outcome as JSON (for CI).")
@click.option("--pipeline-root", type=click.Path(path_type=Path), help="Where artifacts go [.mlops/pipeline-runs].")
def run_command(params, summary_json, pipeline_root):
    """Run the committed compiled pipeline locally with kfp.local, step by step.

    Ends with the published model URI, or the gate's reasons for rejecting. Exit
    status: 0 published, 3 rejected by the gate, 1 failed.

    \b
    Example:
      mlops pipeline run --param champion_uri=s3://mpg-mlops/models/mpg/<id>/ --summary-json run.json
    """
    from pipelines.compile import IR_FILE
    from pipelines.local import run_compiled

    root = current_project().root
    runs = pipeline_root or root / ".mlops" / "pipeline-runs"
    arguments = parse_assignments(params, root / IR_FILE)  # a bad one is a usage error before anything runs
    click.echo(f"running {IR_FILE} locally (kfp.local, SubprocessRunner)")
    terminal = click.get_text_stream("stdout")  # kfp's own output is captured while the run lasts
    outcome = run_compiled(
        root / IR_FILE,
        arguments,
        runs,
        runs / "last-run.log",
        lambda line: terminal.write(line + "\n"),
    )
    if summary_json:
        atomic_write(summary_json, lambda tmp: tmp.write_text(json.dumps(outcome.to_dict(), indent=2) + "\n"))
    click.echo(f"log: {runs / 'last-run.log'}  ({outcome.wall_seconds:.1f} s)")
    if outcome.algorithm and outcome.metrics:
        click.echo(
            f"selected {outcome.algorithm} ({(outcome.model_id or '')[:12]}): trusted-holdout RMSE "
            f"{outcome.metrics['rmse']:.3f} mpg, R² {outcome.metrics['r2']:.3f}"
        )
    if outcome.status == "published":
        click.echo(f"published {outcome.model_uri}")
    elif outcome.status == "rejected":
        reasons = (outcome.gate or {}).get("reasons", [])
        click.echo("rejected by the gate, nothing published:\n  " + "\n  ".join(reasons))
        raise SystemExit(EXIT_GATE_REJECTED)
    else:
        click.echo(f"failed, nothing published: {outcome.error}", err=True)
        raise SystemExit(EXIT_ERROR)


@pipeline_group.command("submit")
@click.option("--host", help="KFP API endpoint, e.g. http://ml-pipeline.kubeflow:8888 [default: MLOPS_KFP_HOST].")
@click.option("--token-file", type=click.Path(path_type=Path), help="Bearer token file (ServiceAccount token).")
@click.option("--experiment", default="mpg-production", show_default=True)
@click.option(
    "--namespace",
    help="Multi-user KFP: the profile namespace runs go to [default: MLOPS_KFP_NAMESPACE; standalone KFP: none].",
)
@click.option(
    "--pipeline-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The compiled pipeline to submit [default: this copy's pipelines/production-pipeline.yaml]; the nightly "
    "CronJob gives the one Argo CD synced from git (ConfigMap mpg-production-pipeline).",
)
@click.option(
    "--stop-istio-sidecar",
    is_flag=True,
    help="Stop the Istio sidecar beside this process when done, so the Job completes (istio/istio#11659).",
)
@param_option
def submit_command(host, token_file, experiment, namespace, pipeline_file, stop_istio_sidecar, params):
    """Submit the committed compiled pipeline to a Kubeflow Pipelines API server.

    The token comes from --token-file, else MLOPS_KFP_TOKEN, else the projected
    ServiceAccount token mount; never from a parameter. Standalone KFP needs none;
    multi-user KFP needs one and --namespace (the profile).

    \b
    Example:
      mlops pipeline submit --host https://kfp.example.com --token-file /var/run/secrets/kfp/token \\
        --param data_revision=main --param repo=https://gitlab.example.com/ml/mpg-mlops.git
    """
    from pipelines.compile import IR_FILE
    from pipelines.submit import read_token, stop_sidecar, submit

    host = host or current_project().settings.kfp_host
    namespace = namespace or current_project().settings.kfp_namespace
    if not host:
        raise click.UsageError("give --host (or MLOPS_KFP_HOST): the Kubeflow Pipelines API endpoint")
    ir_path = pipeline_file or current_project().root / IR_FILE
    try:
        arguments = parse_assignments(params, ir_path)
        run_id, experiment_id = submit(host, ir_path, arguments, experiment, read_token(token_file), namespace)
        click.echo(f"submitted run {run_id} (experiment {experiment} {experiment_id})")
    finally:
        if stop_istio_sidecar:
            click.echo(stop_sidecar(), err=True)
