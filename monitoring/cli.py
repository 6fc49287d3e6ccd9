"""``mlops monitor`` (serve, report) and ``mlops data ingest``."""

from __future__ import annotations

from pathlib import Path

import click

from gitops.cli import merge_request_options
from infra.cli import HTTP_URL, MODEL_URI, current_project, pass_project
from infra.overlays import ENVIRONMENTS

DEFAULT_DB = ".mlops/monitor.db"
db_option = click.option(
    "--db",
    "db_url",
    default=None,
    help="Database URL: sqlite:///PATH or postgresql+psycopg://USER@HOST/DB "
    f"[default: MLOPS_MONITOR_DB, else sqlite:///{DEFAULT_DB}].",
)


def database_url(db_url: str | None) -> str:
    return db_url or current_project().settings.monitor_db or f"sqlite:///{current_project().root / DEFAULT_DB}"


@click.group("monitor")
def monitor_group():
    """Watch the served model: its payload log, stakeholder feedback, drift and quality reports.

    \b
    Example:
      mlops monitor serve &  mlops serve --env staging --log-url http://127.0.0.1:8081/
    """


@monitor_group.command("serve")
@db_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind; 0.0.0.0 in a container.")
@click.option("--port", default=8081, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--pair-timeout",
    type=click.FloatRange(1, 86400),
    default=600,
    show_default=True,
    help="Seconds a request (or response) event waits for its other half before it is dropped.",
)
@click.option(
    "--feedback-hold",
    type=click.FloatRange(0, 60),
    default=5,
    show_default=True,
    help="Seconds a feedback waits for its prediction, still on its way from the payload logger (0: none).",
)
@click.option(
    "--feedback-rate",
    type=click.FloatRange(0, 100_000),
    default=30,
    show_default=True,
    help="Feedback reports a minute per client address, after --feedback-burst (0: no limit); reporters exempt.",
)
@click.option("--feedback-burst", type=click.IntRange(1, 10_000), default=10, show_default=True)
@click.option(
    "--trusted-proxy",
    "proxies",
    multiple=True,
    metavar="CIDR",
    help="A proxy (the page's nginx) whose X-Real-IP names the client; repeat for more. From any other peer "
    "X-Real-IP is ignored and the peer is the client [default: none].",
)
@click.option(
    "--retain-days",
    type=click.FloatRange(0, 3650),
    default=90,
    show_default=True,
    help="Days a prediction is kept (checked each minute; 0: for ever). Predictions with feedback are kept "
    "for the next ingest.",
)
@click.option(
    "--keep-alive",
    type=click.FloatRange(1, 3600),
    default=65,
    show_default=True,
    help="Seconds an idle connection stays open (longer than nginx's and the logger's reuse).",
)
def serve_command(
    db_url, host, port, pair_timeout, feedback_hold, feedback_rate, feedback_burst, proxies, retain_days, keep_alive
):
    """Receive KServe's inference-logger CloudEvents (POST /) and feedback (POST /feedback).

    Request and response events are paired by ce-id and stored per car: the seven
    features, the predictions, the model id, the environment, the time. GET /summary
    counts them; /healthz, /readyz and /metrics are for Kubernetes and Prometheus.
    Feedback records its client (X-Real-IP from a --trusted-proxy, else the peer) and, with an
    `Authorization: Bearer` token of MLOPS_FEEDBACK_TOKENS (name:token,...; the Secret
    mpg-feedback-tokens), its reporter: trusted feedback, not rate-limited.

    \b
    Example:
      mlops monitor serve --db sqlite:///.mlops/monitor.db --port 8081
    """
    import asyncio

    import uvicorn
    import uvloop

    from infra.http import RECEIVE_TIMEOUT, bind, exit_on_signals, server_config
    from monitoring.db import connect
    from monitoring.reporters import RateLimit, parse_tokens, trusted_proxies
    from monitoring.service import MonitorApp

    try:
        secret = current_project().settings.feedback_tokens
        tokens = parse_tokens(secret.get_secret_value() if secret else None)
    except ValueError as e:
        raise click.UsageError(f"MLOPS_FEEDBACK_TOKENS: {e}") from e
    try:
        networks = trusted_proxies(proxies)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--trusted-proxy") from e
    url = database_url(db_url)
    sock = bind(host, port)
    engine = connect(url)  # an unreachable or unusable database is one line, before serving
    limit = RateLimit(feedback_rate, feedback_burst)
    app = MonitorApp(engine, pair_timeout, feedback_hold, tokens, limit, networks, retain_days * 86400)
    config = server_config(
        app,
        receive_timeout=RECEIVE_TIMEOUT,
        keep_alive=keep_alive,
        access_log=False,
        lifespan="on",
        log_level="warning",
    )
    exit_on_signals()
    click.echo(f"monitor on http://{host}:{sock.getsockname()[1]} storing to {engine.url!r}", err=True)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(uvicorn.Server(config).serve(sockets=[sock]))


def _since(text: str | None) -> float:
    """Seconds since the epoch from an ISO time or a duration back from now (``24h``, ``7d``, ``30m``)."""
    import re
    import time
    from datetime import datetime

    if not text:
        return 0.0
    if match := re.fullmatch(r"(\d+(?:\.\d+)?)([mhd])", text):
        return time.time() - float(match[1]) * {"m": 60, "h": 3600, "d": 86400}[match[2]]
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError as e:
        raise click.BadParameter(
            f"{text!r} is neither an ISO time nor a duration like 24h", param_hint="--since"
        ) from e


@monitor_group.command("report")
@db_option
@click.option("--model", "model_ref", type=MODEL_URI, help="Model URI or directory [default: the model recorded last].")
@click.option("--env", type=click.Choice(ENVIRONMENTS), help="The model this environment's overlay serves.")
@click.option("--since", help="Only events since: an ISO time, or a duration back from now (24h, 7d).")
@click.option(
    "--metrics-url",
    type=HTTP_URL,
    multiple=True,
    help="A predictor's Prometheus endpoint, for request rate, latency and errors; repeat for more. A name with "
    "several addresses (a headless Service: mpg-predictor-pods) is read at each.",
)
@click.option(
    "--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), required=True, help="FILE.html or FILE.json."
)
@click.option(
    "--params",
    "params_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Thresholds [params.yaml].",
)
@click.option(
    "--record",
    is_flag=True,
    help="Store the report's alerts in the monitor's database (its /metrics pages through Prometheus) and exit 0 "
    "on an alert: the daily CronJob's form.",
)
@pass_project
def report_command(project, db_url, model_ref, env, since, metrics_url, out_path, params_path, record):
    """Drift, quality and traffic of a served model, against its model card; exit 4 on an alert.

    With --record (the daily CronJob) the alerts are stored in the monitor's database
    instead, where its /metrics exposes them (mpg_monitor_report_alerts) for Prometheus
    to page on, and the command exits 0: an alert is an answer, and a Job that fails
    on one would turn the CronJob, and the environment with it, Degraded in Argo CD.

    Input drift per feature and prediction drift (PSI over the card's training deciles
    or categories, with a chi-square p-value), the share of cars outside the training
    ranges, RMSE and MAE on the cars with feedback against the holdout figures, and
    the predictor's request rate, p50/p99 latency and error shares (--metrics-url).
    Thresholds: monitor: in params.yaml.

    \b
    Example:
      mlops monitor report --env staging --since 7d --out report.html
    """
    import json

    from core.atomic import atomic_write
    from core.errors import EXIT_ALERT
    from core.uri import parse_repository
    from monitoring.db import connect
    from monitoring.report import as_html, build_report, latest_model
    from training.params import load_params

    if model_ref and env:
        raise click.UsageError("give at most one of --model and --env")
    if out_path.suffix not in (".html", ".json"):
        raise click.BadParameter(f"{out_path} must end in .html or .json", param_hint="--out")
    thresholds = load_params(params_path or current_project().root / "params.yaml").monitor
    engine = connect(database_url(db_url), create=False)
    if model_ref is None and not env:
        model_ref = parse_repository(project.settings.model_repository).model(latest_model(engine))
    card = project.card(env or model_ref)
    report, frame = build_report(engine, card, thresholds, _since(since), list(metrics_url))
    text = json.dumps(report.to_dict(), indent=2) if out_path.suffix == ".json" else as_html(report, frame)
    atomic_write(out_path, lambda tmp: tmp.write_text(text + "\n"))
    alerts = f"{len(report.alerts)} alert(s)"
    click.echo(f"{report.rows} served cars of model {card.id[:12]} {report.period}: {alerts} -> {out_path}")
    for alert in report.alerts:
        click.echo(f"  ALERT {alert}")
    for judged in report.judged:
        click.echo(f"  judged: {judged}")
    for note in report.notes:
        click.echo(f"  note: {note}")
    if record:
        from monitoring.db import record_report

        record_report(engine, card.id, report.rows, report.alerts)
        click.echo(f"recorded in the monitor's database: {alerts}")
    elif report.alerts:
        raise SystemExit(EXIT_ALERT)


@click.command("ingest")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=False)
@click.option("--from-feedback", is_flag=True, help="Ingest the feedback-labelled predictions of the monitor.")
@db_option
@click.option("--since", help="With --from-feedback: only feedback since (ISO time or 24h / 7d).")
@click.option(
    "--accept-quarantined", is_flag=True, help="With --from-feedback: add the rows the screen held too (checked)."
)
@click.option("--dvc-remote", help="DVC remote to push the new version to [default: the repository's].")
@merge_request_options
@pass_project
def ingest_command(project, path, from_feedback, db_url, since, accept_quarantined, dvc_remote, **mr):
    """Append new rows to the training data as a new DVC version (validated, deduplicated, pushed).

    Rows come from a CSV (raw or canonical column names) or, with --from-feedback, from
    the cars whose actual consumption was reported. Feedback is screened (params.yaml
    ingest:): a row far from what the model predicted, outside its training ranges, or
    from a client that reported too much is held in data/quarantine.csv, not added.
    Every added row's origin goes to data/provenance.csv. Any invalid row stops it,
    named by line and column, and nothing changes. With --branch --commit --push the
    new version is proposed as a merge request; merging it retrains.

    \b
    Example:
      mlops data ingest new-cars.csv
      mlops data ingest --from-feedback --since 7d --branch mlops/data --commit --push
    """
    from monitoring.datachange import DataChange
    from monitoring.ingest import MAX_ROWS
    from training.data import read_table

    if bool(path) == from_feedback:
        raise click.UsageError("give a CSV file or --from-feedback, not both or neither")
    if accept_quarantined and not from_feedback:
        raise click.UsageError("--accept-quarantined goes with --from-feedback")
    params = _load_params()
    if not from_feedback:
        change = DataChange(str(path), Path(params.data.path), table=read_table(path, MAX_ROWS), remote=dvc_remote)
    else:
        change = _feedback_change(project, params, db_url, since, accept_quarantined, dvc_remote)
        if change is None:
            click.echo("no feedback to ingest" + (f" since {since}" if since else "") + ": nothing changed")
            return
    _apply_data_change(change, **mr)


def _feedback_change(project, params, db_url, since, accept_quarantined, dvc_remote):
    """The feedback as a data change: screened (monitoring/screen.py), the held rows in quarantine."""
    from monitoring.datachange import DataChange
    from monitoring.db import connect
    from monitoring.screen import DATA_COLUMNS, feedback_rows, origins, quarantine_table, residuals, screen

    frame = feedback_rows(connect(database_url(db_url), create=False), _since(since))
    if frame.empty:
        return None
    units = _holdout_rmse(project, frame, params)
    reasons = screen(frame, params.ingest.max_residual, params.ingest.max_per_client, units)
    take = frame if accept_quarantined else frame[(reasons == "").to_numpy()]
    return DataChange(
        "the monitor's feedback",
        Path(params.data.path),
        table=take[DATA_COLUMNS].reset_index(drop=True),
        origins=origins(take),
        quarantine=None if accept_quarantined else quarantine_table(frame, reasons),
        residuals=residuals(take),
        remote=dvc_remote,
    )


def _holdout_rmse(project, frame, params) -> dict[str, float]:
    """The holdout RMSE of each model that made these predictions (the unit of the residual screen), from its
    card in the store; a model the store cannot show is judged by the gate's largest allowed RMSE."""
    from core.errors import MlopsError
    from core.uri import parse_repository

    store, repository = project.store, parse_repository(project.settings.model_repository)
    units = {}
    for model_id in frame["model_id"].unique():
        try:
            units[model_id] = store.card(repository.model(model_id)).metrics.holdout.rmse
        except MlopsError:
            units[model_id] = params.gate.max_holdout_rmse
    return units


def _apply_data_change(change, branch, do_commit, do_push, remote, target) -> None:
    """Make ``change`` in the workspace, or on ``branch`` as a merge request (a worktree of ``target``)."""
    from gitops.changes import pushed
    from gitops.mergerequest import Proposal
    from monitoring.ingest import QUARANTINE, dvc_file, object_in_repository

    root = current_project().root
    held = 0 if change.quarantine is None else len(change.quarantine)
    if not do_commit:
        change.apply(root)
        done = change.done
        click.echo(done.summary())
        if held:
            click.echo(
                f"{held} feedback row(s) held in {QUARANTINE} (not added): check them, then --accept-quarantined"
            )
        if done.version != done.previous:
            carried = " and the new object under data/dvc-remote/" if object_in_repository(
                root, done.version, change.remote
            ) else ""  # fmt: skip
            click.echo(
                f"next: commit {dvc_file(change.data)}, data/provenance.csv{carried}, then `dvc repro` to retrain "
                "(or run this with --branch B --commit --push for a merge request)"
            )
        return
    proposal = Proposal(branch=branch, target=target, remote=remote, push=do_push, labels=["mlops", "data"])
    proposed = change.propose(root, proposal)
    if proposed is None:
        click.echo(f"nothing new on {target}'s data: nothing to commit on {branch}")
        return
    where = pushed(proposed, proposal) if proposed.pushed else f"committed {proposed.commit[:12]} on {branch}"
    click.echo(f"{change.done.summary()}\n{change.title()}: {where}")
    if held:
        click.echo(f"{held} feedback row(s) held in {QUARANTINE} on {branch} (not added)")


@click.command("remove-source")
@click.option(
    "--source", required=True, type=click.Choice(["seed", "csv", "feedback"]), help="Where the rows came from."
)
@click.option("--reference", help="Only rows of this reference (a CSV's name; a feedback's request id prefix).")
@click.option("--client", help="Only rows this client (address, or reporter:NAME) reported.")
@click.option("--dvc-remote", help="DVC remote to push the new version to [default: the repository's].")
@merge_request_options
def remove_source_command(source, reference, client, dvc_remote, **mr):
    """Remove every row of one source from the training data, as a new DVC version (data/provenance.csv says
    where each row came from): a bad CSV or a poisoning client goes in one step.

    \b
    Example:
      mlops data remove-source --source feedback --client 203.0.113.9 --branch mlops/data --commit --push
      mlops data remove-source --source csv --reference new-cars.csv
    """
    from monitoring.datachange import DataChange

    def matches(provenance):
        mask = provenance["source"] == source
        if reference:
            mask &= provenance["reference"].str.startswith(reference)
        if client:
            mask &= provenance["client"] == client
        return mask

    described = " ".join(filter(None, [source, reference and f"reference {reference}", client and f"client {client}"]))
    params = _load_params()
    _apply_data_change(DataChange(described, Path(params.data.path), matches=matches, remote=dvc_remote), **mr)


def _load_params():
    from training.params import load_params

    return load_params(current_project().root / "params.yaml")
