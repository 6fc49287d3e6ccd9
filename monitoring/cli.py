"""``mlops monitor`` (serve, report) and ``mlops data ingest``."""

from __future__ import annotations

from pathlib import Path

import click

from core.cli import MODEL_URI
from core.overlays import ENVIRONMENTS
from core.settings import project_root
from serving.cli import bench_model_option

DEFAULT_DB = ".mlops/monitor.db"
db_option = click.option(
    "--db",
    "db_url",
    envvar="MLOPS_MONITOR_DB",
    default=None,
    help=f"Database URL: sqlite:///PATH or postgresql+psycopg://USER@HOST/DB [default: sqlite:///{DEFAULT_DB}].",
)


def database_url(db_url: str | None) -> str:
    return db_url or f"sqlite:///{project_root() / DEFAULT_DB}"


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
def serve_command(db_url, host, port, pair_timeout, feedback_hold):
    """Receive KServe's inference-logger CloudEvents (POST /) and feedback (POST /feedback).

    Request and response events are paired by ce-id and stored per car: the seven
    features, the predictions, the model id, the environment, the time. GET /summary
    counts them; /healthz, /readyz and /metrics are for Kubernetes and Prometheus.

    \b
    Example:
      mlops monitor serve --db sqlite:///.mlops/monitor.db --port 8081
    """
    import asyncio
    import signal

    import uvicorn
    import uvloop

    from monitoring.db import connect
    from monitoring.service import MonitorApp
    from serving.limits import GuardedHttpToolsProtocol
    from serving.server import bind

    url = database_url(db_url)
    sock = bind(host, port)
    engine = connect(url)  # an unreachable or unusable database is one line, before serving
    app = MonitorApp(engine, pair_timeout, feedback_hold)
    config = uvicorn.Config(
        app,
        http=GuardedHttpToolsProtocol,
        lifespan="on",
        log_level="warning",
        access_log=False,
        proxy_headers=False,  # nothing here reads the client address
        server_header=False,
        timeout_keep_alive=65,
    )

    def stop(_signum, _frame):
        raise SystemExit(0)  # uvicorn shuts down gracefully, then re-raises the signal here

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
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
@click.option("--metrics-url", help="The predictor's Prometheus endpoint, for request rate, latency and errors.")
@click.option(
    "--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), required=True, help="FILE.html or FILE.json."
)
@click.option(
    "--params",
    "params_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Thresholds [params.yaml].",
)
def report_command(db_url, model_ref, env, since, metrics_url, out_path, params_path):
    """Drift, quality and traffic of a served model, against its model card; exit 4 on an alert.

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
    from core.model_card import verify_model_dir
    from core.overlays import read_model_uri
    from core.settings import Settings
    from core.store import open_store
    from core.uri import LocalModelDir, parse_repository
    from monitoring.db import connect
    from monitoring.report import as_html, build_report, latest_model
    from training.params import load_params

    if model_ref and env:
        raise click.UsageError("give at most one of --model and --env")
    if out_path.suffix not in (".html", ".json"):
        raise click.BadParameter(f"{out_path} must end in .html or .json", param_hint="--out")
    thresholds = load_params(params_path or project_root() / "params.yaml").monitor
    engine = connect(database_url(db_url), create=False)
    settings = Settings.from_env()
    if env:
        model_ref = read_model_uri(project_root(), env)
    elif model_ref is None:
        model_ref = parse_repository(settings.model_repository).model(latest_model(engine))
    card = (
        verify_model_dir(model_ref.path)
        if isinstance(model_ref, LocalModelDir)
        else open_store(settings).card(model_ref)
    )
    report, frame = build_report(engine, card, thresholds, _since(since), metrics_url)
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
    if report.alerts:
        raise SystemExit(EXIT_ALERT)


@click.command("ingest")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=False)
@click.option("--from-feedback", is_flag=True, help="Ingest the feedback-labelled predictions of the monitor.")
@db_option
@click.option("--since", help="With --from-feedback: only feedback since (ISO time or 24h / 7d).")
@click.option("--dvc-remote", help="DVC remote to push the new version to [default: the repository's].")
@click.option("--branch", help="Put the new version on this branch (in a temporary worktree), not in the workspace.")
@click.option("--commit", "do_commit", is_flag=True, help="Commit the new data version on --branch.")
@click.option("--push", "do_push", is_flag=True, help="Push --branch and open a merge request (push options).")
@click.option("--remote", default="origin", show_default=True, help="Git remote name or URL to push to.")
@click.option("--target", default="main", show_default=True, help="Branch the merge request targets.")
def ingest_command(path, from_feedback, db_url, since, dvc_remote, branch, do_commit, do_push, remote, target):
    """Append new rows to the training data as a new DVC version (validated, deduplicated, pushed).

    Rows come from a CSV (raw or canonical column names) or, with --from-feedback, from
    the cars whose actual consumption was reported. Any invalid row stops it, named by
    line and column, and nothing changes: not the CSV, not the .dvc file, not the
    remote. With --branch --commit --push the new version is proposed as a merge
    request; merging it retrains both pipelines (CI's rules on data/*.dvc).

    \b
    Example:
      mlops data ingest new-cars.csv
      mlops data ingest --from-feedback --since 7d --branch mlops/data --commit --push
    """
    from monitoring.ingest import DVC_FILE, feedback_rows, ingest, object_in_repository
    from training.data import read_table

    if bool(path) == from_feedback:
        raise click.UsageError("give a CSV file or --from-feedback, not both or neither")
    if do_push and not do_commit or do_commit != bool(branch):
        raise click.UsageError("--branch and --commit go together (--push needs both)")
    root = project_root()
    if from_feedback:
        from monitoring.db import connect

        table, source = (
            feedback_rows(connect(database_url(db_url), create=False), _since(since)),
            "the monitor's feedback",
        )
        if table.empty:
            click.echo("no feedback to ingest" + (f" since {since}" if since else "") + ": nothing changed")
            return
    else:
        table, source = read_table(path), str(path)
    if do_commit:
        click.echo(_propose_data(root, table, source, dvc_remote, branch, do_push, remote, target))
        return
    done = ingest(root, table, source, dvc_remote)
    click.echo(done.summary())
    if done.added:
        click.echo(
            f"next: commit {DVC_FILE}"
            + (
                " and the new object under data/dvc-remote/"
                if object_in_repository(root, done.version, dvc_remote)
                else ""
            )
            + ", then `dvc repro` to retrain (or ingest with --branch B --commit --push for a merge request)"
        )


def _propose_data(root: Path, table, source: str, dvc_remote, branch: str, push: bool, remote: str, target: str) -> str:
    """The new data version on ``branch``, made from the target's data in a temporary worktree: the
    checkout (its data, its DVC remote folder) is never read or touched."""
    from gitops.changes import BOT_TRAILER, pushed
    from gitops.git import toplevel
    from gitops.mergerequest import Proposal, propose
    from monitoring.ingest import DVC_FILE, ingest, object_in_repository
    from training.versioning import DATA_TARGETS, pull

    results = []

    def edit(tree: Path) -> list[Path]:
        pull(tree, dvc_remote, DATA_TARGETS)  # the target's data version, from the worktree's own remote
        done = ingest(tree, table, source, dvc_remote)
        results.append(done)
        if not done.added:
            return []
        carried = object_in_repository(tree, done.version, dvc_remote)  # the committed local remote travels in git
        return [DVC_FILE] if carried is None else [DVC_FILE, carried]

    def title() -> str:
        done = results[-1]
        return f"data: {done.added} new row(s), version {done.version.md5[:12]}"

    def describe(_tree: Path) -> str:
        done = results[-1]
        return "\n".join(
            [
                f"**{done.added} new row(s)** from {source} ({done.duplicates} duplicate(s) dropped): "
                f"{done.rows_before} -> {done.rows_before + done.added} rows.",
                "",
                f"`{DVC_FILE}`: `{done.previous.md5}` -> `{done.version.md5}` (pushed to the DVC remote).",
                "",
                "Merging this retrains: CI submits the production pipeline on data changes, and the next",
                "`dvc repro` uses the new version.",
                "",
                f"_Opened by `mlops data ingest` ({BOT_TRAILER})._",
            ]
        )

    proposal = Proposal(branch=branch, target=target, remote=remote, push=push, labels=["mlops", "data"])
    proposed = propose(toplevel(root), proposal, edit, lambda: f"{title()}\n\n{BOT_TRAILER}: ingest\n", describe)
    if proposed is None:
        duplicates = results[-1].duplicates if results else 0
        return f"nothing new on {target}'s data ({duplicates} duplicate row(s)): nothing to commit on {branch}"
    where = pushed(proposed, proposal) if proposed.pushed else f"committed {proposed.commit[:12]} on {branch}"
    return f"{results[-1].summary()}\n{title()}: {where}"


@click.command("monitor")
@bench_model_option(help="Model directory the predictor serves and the events name.")
@click.option("--seconds", default=5, show_default=True, type=click.IntRange(1, 600), help="Each wrk run.")
@click.option("--rows", default=100_000, show_default=True, type=click.IntRange(1), help="Predictions to report on.")
def bench_monitor(model_dir, seconds, rows):
    """Benchmark: monitor ingest vs the predictor's request rate (SQLite, PostgreSQL), and the report's cost.

    PostgreSQL is a throwaway local cluster (Debian's postgresql package; skipped, and
    said, when it is not installed).

    \b
    Example:
      mlops bench monitor --seconds 5
    """
    from monitoring.bench import section

    click.echo(section(model_dir.resolve(), seconds, rows).detail)
