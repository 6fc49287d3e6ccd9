"""``mlops manifests`` (render, validate) and ``mlops gitops`` (bump, promote, rollback, status, diff)."""

from __future__ import annotations

import json
from functools import wraps
from pathlib import Path

import click
import yaml

from infra.cli import HTTP_BASE, HTTP_URL, STORE_URI, current_project, pass_project
from infra.overlays import ENVIRONMENTS

UP_STATE = Path(".mlops/up")  # mlops up's state and its predictors' logs, read by mlops gitops status

ENV = click.Choice(ENVIRONMENTS)


class GateReportFile(click.Path):
    """A readable file holding the JSON ``mlops gate --report`` writes, parsed and checked; anything else is a
    usage error naming the file and the field."""

    name = "gate_report"

    def __init__(self):
        super().__init__(exists=True, dir_okay=False, path_type=Path)

    def convert(self, value, param, ctx):
        if isinstance(value, dict):
            return value
        path = super().convert(value, param, ctx)
        try:
            parsed = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            self.fail(f"{path} is not JSON ({e}); give the file `mlops gate --report` wrote", param, ctx)
        from pydantic import ValidationError

        from gitops.changes import GateSummary

        try:
            return GateSummary.model_validate(parsed).model_dump()
        except ValidationError as e:
            where = ".".join(map(str, e.errors()[0]["loc"])) or "the top level"
            self.fail(
                f"{path} is not a gate report ({where}: {e.errors()[0]['msg']}); give `mlops gate --report`'s file"
            )


@click.group("manifests")
def manifests_group():
    """Render and check the Kustomize trees the cluster is built from.

    \b
    Example:
      mlops manifests validate && mlops manifests build staging
    """


@manifests_group.command("validate")
@click.option("--tree", "trees", multiple=True, help="Only this tree (repeatable) [default: all].")
@click.option(
    "--repo-url",
    help="This project's git repository: Argo CD syncs it, not a fork (CI gives its own) [default: unchecked].",
)
def validate_command(trees, repo_url):
    """Render every tree and check each object: its schema (strict), the policy, and kubeconform if installed.

    Trees: overlays/staging, overlays/production, base/kfp, overlays/kfp-multi-user,
    argocd. Each finding names the tree, the object and the field; exit 1 when there is one.

    \b
    Example:
      mlops manifests validate
      mlops manifests validate --tree overlays/staging --repo-url https://gitlab.example.com/mlops/mpg-mlops.git
    """
    import shutil
    import time

    from gitops.manifests import validate_all
    from gitops.policy import PolicyError

    started = time.perf_counter()
    rendered, found = validate_all(current_project().root, list(trees) or None, repo_url)
    if found:
        raise PolicyError(f"{len(found)} problem(s):\n" + "\n".join(map(str, found)))
    count = sum(len(objects) for objects in rendered.values())
    click.echo(f"{count} objects in {len(rendered)} trees valid ({time.perf_counter() - started:.2f} s)")
    if not shutil.which("kubeconform"):
        click.echo("kubeconform not installed: skipped (the strict schema check above ran; CI runs kubeconform)")


@manifests_group.command("scan")
@click.option(
    "--checkov",
    "checkov",
    default=None,
    help="The checkov to run [default: .venv-checkov/bin/checkov, which `make scan` installs, else PATH].",
)
@click.option("--show-skipped", is_flag=True, help="Also list each skipped check with its reason.")
def scan_command(checkov, show_skipped):
    """Run checkov over every rendered tree, the Dockerfile and .gitlab-ci.yml; exit 1 on a failed check.

    A check is skipped only in place, with a reason (checkov.io/skipN: CKV_ID=reason on the
    object; `# checkov:skip=CKV_ID: reason` in the Dockerfile); a skip without one fails.
    The project's own rules are `mlops manifests validate`.

    \b
    Example:
      make scan
      mlops manifests scan --checkov .venv-checkov/bin/checkov --show-skipped
    """
    import shutil

    from gitops.scan import ScanError, scan

    root = current_project().root
    local = root / ".venv-checkov" / "bin" / "checkov"
    checkov = checkov or (str(local) if local.is_file() else shutil.which("checkov"))
    if not checkov:
        raise ScanError("checkov is not installed: `make scan` installs it (pinned, in .venv-checkov)")
    result = scan(root, checkov)
    if show_skipped:
        click.echo("\n".join(f"skipped: {line}" for line in result.skipped))
    if result.failed:
        raise ScanError(f"{result.summary()}:\n" + "\n".join(result.failed))
    click.echo(result.summary())


@manifests_group.command("build")
@click.argument("tree")
def build_command(tree):
    """Print a rendered tree: an environment (staging, production) or a tree name (base/kfp, argocd).

    \b
    Example:
      mlops manifests build staging | kubectl diff -f -
    """
    from gitops.manifests import TREES, render_tree

    name = f"overlays/{tree}" if tree in ENVIRONMENTS else tree
    if name not in TREES:
        raise click.BadParameter(f"unknown tree {tree!r}; expected {', '.join((*ENVIRONMENTS, *TREES))}")
    click.echo(yaml.dump_all(render_tree(current_project().root, name), Dumper=_BlockDumper, sort_keys=False), nl=False)


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (nginx.conf, the page) as literal blocks, readable as the files they came from."""


_BlockDumper.add_representer(
    str,
    lambda dumper, text: dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None),
)


@manifests_group.command("model-store")
@click.argument("env", type=ENV)
def model_store_command(env):
    """Print the model store URL an environment's overlay names (k8s/overlays/ENV/model-store.yaml).

    CI takes it as MLOPS_S3_ENDPOINT_URL, unless that is set (a runner outside the
    cluster reaching the store at another address).

    \b
    Example:
      export MLOPS_S3_ENDPOINT_URL=${MLOPS_S3_ENDPOINT_URL:-$(mlops manifests model-store production)}
    """
    from gitops.manifests import model_store

    click.echo(model_store(current_project().root, env).url)


@manifests_group.command("store-secret")
@click.argument("env", type=ENV)
@click.option("--namespace", help="Where the Secret goes [default: the overlay's namespace].")
def store_secret_command(env, namespace):
    """Print the Secret mpg-s3-credentials for an environment, to pipe into kubectl apply.

    The credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; the
    annotations KServe's storage initializer reads (endpoint, https, certificate check)
    from the overlay's model-store.yaml, so the endpoint is set in one place.

    \b
    Example:
      mlops manifests store-secret staging | kubectl apply -f -
      mlops manifests store-secret production --namespace kubeflow | kubectl apply -f -
    """
    import os

    from gitops.manifests import model_store, render_tree, store_secret

    keys = {name: os.environ.get(name, "") for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    if not all(keys.values()):
        missing = " and ".join(name for name, value in keys.items() if not value)
        raise click.UsageError(f"{missing} not set: export the model store's credentials first")
    root = current_project().root
    if namespace is None:
        namespace = next(
            o["metadata"]["name"] for o in render_tree(root, f"overlays/{env}") if o["kind"] == "Namespace"
        )
    secret = store_secret(model_store(root, env), namespace, *keys.values())
    # JSON, not YAML: a key such as `y`, `on` or `0123` would reach the API server as a boolean or a number
    click.echo(json.dumps(secret, indent=2))


def git_value(kind: str):
    """A click callback reading a git branch (``kind`` "branch") or any other ref or remote as a name, never an
    option (``gitops.git.not_an_option``): a bad one is a usage error naming the option."""

    def check(ctx, param, value):
        from gitops.git import GitError, branch_name, not_an_option

        if value is None:
            return None
        try:
            return (branch_name if kind == "branch" else not_an_option)(value, f"--{param.name}")
        except GitError as e:
            raise click.BadParameter(str(e)) from e

    return check


def merge_request_options(command):
    """--branch/--commit/--push/--remote/--target, shared by every command that proposes a change."""
    options = [
        click.option(
            "--branch",
            callback=git_value("branch"),
            help="Make the change on this branch (in a temporary worktree, not here).",
        ),
        click.option("--commit", "do_commit", is_flag=True, help="Commit the change on --branch."),
        click.option("--push", "do_push", is_flag=True, help="Push --branch and open a merge request (push options)."),
        click.option(
            "--remote",
            default="origin",
            show_default=True,
            callback=git_value("remote"),
            help="Git remote name or URL to push to.",
        ),
        click.option(
            "--target",
            default="main",
            show_default=True,
            callback=git_value("branch"),
            help="Branch the merge request targets.",
        ),
    ]
    for option in reversed(options):
        command = option(command)

    @wraps(command)
    def checked(*args, branch, do_commit, do_push, **kwargs):
        if do_push and not do_commit:
            raise click.UsageError("--push needs --commit")
        if do_commit != bool(branch):
            raise click.UsageError("--branch and --commit go together (--push needs both)")
        return command(*args, branch=branch, do_commit=do_commit, do_push=do_push, **kwargs)

    return checked


@click.group("gitops")
def gitops_group():
    """Change what runs where, through git: each command edits one environment's model file.

    \b
    Example:
      mlops gitops status
    """


def _apply(action, env, uri, edit, branch, do_commit, do_push, remote, target, card, gate_report=None):
    """Edit the working tree, or commit (and push) the edit on a branch, shipping the models the overlays
    then name (``infra.shipped``); say what happened."""
    from gitops.changes import apply_change, shipping
    from gitops.git import toplevel
    from gitops.mergerequest import Proposal

    root = toplevel(current_project().root)
    unshipped = []
    edit = shipping(edit, current_project().store, root, unshipped, pruning=action != "promote")
    proposal = Proposal(branch=branch, target=target, remote=remote, push=do_push) if do_commit else None
    click.echo(apply_change(root, action, env, uri, edit, card, gate_report, proposal).message)
    for missing in unshipped:
        click.echo(
            f"warning: model {missing.model_id[:12]} is not shipped in data/models (the store does not hold it): "
            "a fresh clone cannot serve it offline",
            err=True,
        )


@gitops_group.command("bump")
@click.option("--env", type=ENV, required=True)
@click.option("--model-uri", "uri", type=STORE_URI, required=True, help="s3://<bucket>/<prefix>/<id>/ to serve.")
@click.option("--force", is_flag=True, help="Skip checking that the store holds the model (card and file).")
@click.option(
    "--gate-report", type=GateReportFile(), help="JSON of `mlops gate --report`, for the merge request's description."
)
@merge_request_options
def bump_command(env, uri, force, gate_report, **mr):
    """Point an environment at a model: one line of k8s/overlays/<env>/model.yaml.

    The URI must be an immutable store URI whose model the store holds and verifies
    (unless --force); bumping to the model already served changes nothing.

    \b
    Example:
      mlops gitops bump --env staging --model-uri s3://mpg-mlops/models/mpg/<id>/
      mlops gitops bump --env staging --model-uri s3://... --branch mlops/bump-staging --commit --push
    """
    from gitops.changes import bump_edit

    card = _card(uri, force, "bump")
    _apply("bump", env, uri, bump_edit(env, uri), card=card, gate_report=gate_report, **mr)


@gitops_group.command("promote")
@click.option("--from", "source", type=ENV, default="staging", show_default=True)
@click.option("--to", "target_env", type=ENV, default="production", show_default=True)
@merge_request_options
def promote_command(source, target_env, **mr):
    """Serve in one environment what another serves: copy its model file (a one-file, one-line diff).

    \b
    Example:
      mlops gitops promote --from staging --to production --branch mlops/promote-production --commit --push
    """
    from gitops.changes import promote_edit
    from infra.overlays import read_model_uri

    uri = read_model_uri(current_project().root, source)
    _apply("promote", target_env, uri, promote_edit(source, target_env), card=_card(uri, True, "promote"), **mr)


@gitops_group.command("rollback")
@click.option("--env", type=ENV, required=True)
@click.option(
    "--to", "to", metavar="REF", callback=git_value("ref"), help="Serve the model the file named at this git revision."
)
@click.option("--force", is_flag=True, help="Skip checking that the store still holds that model.")
@merge_request_options
def rollback_command(env, to, force, **mr):
    """Serve the model an environment served before (from the model file's git history).

    \b
    Example:
      mlops gitops rollback --env production --branch mlops/rollback-production --commit --push
      mlops gitops rollback --env staging --to v1.4
    """
    from gitops.changes import bump_edit, rollback_target
    from gitops.git import toplevel
    from infra.overlays import read_model_uri

    root = toplevel(current_project().root)
    uri = rollback_target(root, env, read_model_uri(root, env), to)
    _apply("rollback", env, uri, bump_edit(env, uri), card=_card(uri, force, "rollback"), **mr)


def _card(uri, force: bool, action: str):
    """The model's card from the store (restored from the shipped models in git history if need be), checked;
    with ``force`` a missing model is tolerated."""
    from core.errors import MlopsError
    from gitops.changes import GitOpsError, store_holds
    from gitops.git import toplevel

    store = current_project().store
    try:
        if not store_holds(store, toplevel(current_project().root), uri):
            store.card(uri)  # raises, naming what is missing
        return store.card(uri)
    except MlopsError as e:
        if force:
            return None
        raise GitOpsError(f"{e}; to {action} to it anyway: --force") from e


@gitops_group.command("image")
@click.option("--image", "image", required=True, metavar="NAME@sha256:DIGEST", help="The image CI built.")
@click.option(
    "--serving-image", metavar="NAME@sha256:DIGEST", help="The serving-only image CI built (the predictor's)."
)
@merge_request_options
def image_command(image, serving_image, branch, do_commit, do_push, remote, target):
    """Pin the project image by digest: infra/image.py, both kustomizations and the compiled pipeline;
    with --serving-image, the predictor's image in infra/image.py and k8s/base too.

    CI runs it after building the image of a code change (tagged with the commit), so
    the merge request that changes what runs is one reviewed diff.

    \b
    Example:
      mlops gitops image --image registry.example.com/mpg@sha256:<digest> --branch mlops/image --commit --push
    """
    from gitops.changes import BOT_TRAILER, GitOpsError, image_edit, parse_image, pushed
    from gitops.git import toplevel
    from gitops.mergerequest import Proposal, propose

    for option, value in (("--image", image), ("--serving-image", serving_image)):
        try:
            if value is not None:
                parse_image(value)
        except GitOpsError as e:
            raise click.BadParameter(str(e), param_hint=option) from e
    name, digest = parse_image(image)
    root, edit = toplevel(current_project().root), image_edit(image, serving_image)
    subject = f"image: pin {name}@{digest[:19]}"
    if not do_commit:
        changed = edit(root)
        click.echo(f"{subject}: {', '.join(map(str, changed))} updated" if changed else f"{image} is pinned already")
        return
    proposal = Proposal(branch=branch, target=target, remote=remote, push=do_push, labels=["mlops", "image"])
    message = (
        f"{subject}\n\nThe images CI built for the code on {target}: steps and submitter run the first, "
        "the predictor the serving one.\n\n"
        f"{BOT_TRAILER}: image\n"
    )
    done = propose(root, proposal, edit, message)
    if done is None:
        click.echo(f"{image} is pinned already on {branch}: nothing to commit")
    else:
        click.echo(f"{subject}: " + (pushed(done, proposal) if done.pushed else f"committed {done.commit[:12]}"))


def cluster_options(function):
    """``--cluster``, ``--context`` and ``--kubeconfig``: read the environments' rollouts from a cluster."""
    function = click.option(
        "--kubeconfig", type=click.Path(exists=True, dir_okay=False), help="A kubeconfig file [default: kubectl's]."
    )(function)
    function = click.option("--context", help="The kubeconfig context [default: the current one].")(function)
    return click.option(
        "--cluster", is_flag=True, help="Also read each environment's rollout from the cluster kubectl points at."
    )(function)


def cluster_health(project, context, kubeconfig) -> dict:
    """Per environment, how the rollout of the model its overlay names stands in the cluster (gitops.rollout)."""
    from gitops.doctor import local_kubectl
    from gitops.manifests import render_tree
    from gitops.rollout import environment_health

    kubectl = local_kubectl(context, kubeconfig)
    found = {}
    for env in ENVIRONMENTS:
        namespace = next(
            o["metadata"]["name"] for o in render_tree(project.root, f"overlays/{env}") if o["kind"] == "Namespace"
        )
        found[env] = environment_health(kubectl, namespace, str(project.model_ref(env)))
    return found


@gitops_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@cluster_options
@pass_project
def status_command(project, as_json, cluster, context, kubeconfig):
    """What runs where: per environment the model URI and id, algorithm, holdout metrics, the commit that set it.

    Metrics come from the model card in the store (the local store unless
    MLOPS_S3_ENDPOINT_URL is set). While `mlops up` runs (or after it ran), each
    environment also shows what git wants and what runs, in Argo CD's words:
    Synced/OutOfSync, Healthy/Progressing/Degraded/Missing, with the revision.
    With --cluster, the rollout in the cluster too: Healthy only once every replica
    runs the model git names and no old one is left; Degraded when the new model's
    pods fail (KServe's Ready and Argo CD's Healthy stay true while the old pods serve).

    \b
    Example:
      mlops gitops status --json
      mlops gitops status --cluster --context production
    """
    from gitops.changes import status, status_json, status_table
    from gitops.follow import read_states

    rows, live = status(project.root, project.store), read_states(project.root / UP_STATE)
    found = cluster_health(project, context, kubeconfig) if cluster else None
    click.echo(status_json(rows, live, found) if as_json else status_table(rows, live, found))


@gitops_group.command("diff")
@click.option(
    "--base",
    required=True,
    metavar="REF",
    callback=git_value("ref"),
    help="Git revision to compare the working tree with.",
)
@click.option("--format", "fmt", type=click.Choice(["text", "markdown"]), default="text", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file, not stdout.")
def diff_command(base, fmt, output):
    """The object-level diff of every rendered tree between REF and the working tree.

    \b
    Example:
      mlops gitops diff --base origin/main --format markdown --output gitops-diff.md
    """
    from core.atomic import atomic_write
    from gitops.diff import as_markdown, as_text, diff_against
    from gitops.git import toplevel

    changes = diff_against(toplevel(current_project().root), base)
    text = (as_markdown if fmt == "markdown" else as_text)(changes) + "\n"
    if output:
        atomic_write(output, lambda tmp: tmp.write_text(text))
        click.echo(f"{len(changes)} object change(s) written to {output}")
    else:
        click.echo(text, nl=False)


@gitops_group.command("smoke")
@click.option("--env", type=ENV, required=True, help="The environment whose overlay names the model to expect.")
@click.option("--url", required=True, help="The environment's base URL (the client page's origin).")
@click.option("--timeout", type=click.FloatRange(0, 3600), default=600, show_default=True, help="Seconds to wait.")
@click.option("--interval", type=click.FloatRange(0.1, 60), default=5, show_default=True, help="Seconds between polls.")
@click.option(
    "--consecutive",
    type=click.IntRange(1, 1000),
    default=10,
    show_default=True,
    help="Answers in a row from the new model (old pods answer during a rollout).",
)
@click.option("--context", help="Also wait for the rollout in this kubeconfig context (Degraded fails at once).")
@click.option(
    "--kubeconfig", type=click.Path(exists=True, dir_okay=False), help="With the rollout: this kubeconfig file."
)
@pass_project
def smoke_command(project, env, url, timeout, interval, consecutive, context, kubeconfig):
    """Wait until an environment serves the model its overlay names, then check it on known cars.

    It counts as served after --consecutive answers in a row from that model; each must
    equal what the model file (fetched from the store, verified) predicts, and be
    plausible for those cars. With --context (or --kubeconfig) it first waits for the
    rollout itself: every replica on the new model, no old one left; a new model whose
    pods fail ends it at once. CI runs this before opening the promotion merge request.

    \b
    Example:
      mlops gitops smoke --env staging --url https://mpg.staging.example.com
    """
    from core.model_card import load_model
    from gitops.smoke import smoke

    uri = project.model_ref(env)
    if context or kubeconfig:
        from gitops.doctor import local_kubectl
        from gitops.manifests import render_tree
        from gitops.smoke import wait_for_rollout

        namespace = next(
            o["metadata"]["name"] for o in render_tree(project.root, f"overlays/{env}") if o["kind"] == "Namespace"
        )
        rolled = wait_for_rollout(local_kubectl(context, kubeconfig), namespace, uri, timeout, interval)
        click.echo(f"{env}: rollout {rolled}")
    path, model_id = project.resolve(uri)
    model, _ = load_model(path, model_id)
    result = smoke(url, uri, model, timeout, interval, consecutive)
    cars = ", ".join(f"{p:.1f}" for p in result.predictions)
    click.echo(f"{env} serves model {uri.model_id[:12]} (after {result.waited_seconds:.0f} s); smoke cars: {cars} mpg")


def _answers(base: str) -> bool:
    """Does a monitor answer at ``base`` (its /healthz, within a second)?"""
    import httpx

    try:
        return httpx.get(f"{base.rstrip('/')}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@click.command("up")
@click.option(
    "--repo",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The git repository to follow (default: this project's).",
)
@click.option("--branch", default="main", show_default=True, help="The branch each environment follows.")
@click.option("--env", "envs", multiple=True, type=click.Choice(ENVIRONMENTS), help="Only these (default: both).")
@click.option("--staging-port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--production-port", default=8001, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--interval", default=2.0, show_default=True, type=click.FloatRange(0.2, 600), help="Seconds between git reads."
)
@click.option(
    "--log-url", type=HTTP_URL, help="Every predictor posts its predictions to this monitor (as KServe's logger would)."
)
@click.option(
    "--monitor",
    type=HTTP_BASE,
    default="http://127.0.0.1:8081",
    show_default=True,
    help="Where the pages' feedback goes.",
)
@pass_project
def up_command(project, repo, branch, envs, staging_port, production_port, interval, log_url, monitor):
    """Run staging and production here, each following its overlay on a branch, as Argo CD and KServe would.

    Each environment is the client page and API on its port (nginx with the page's own
    nginx.conf) in front of a predictor serving the model its rendered InferenceService names.
    A commit that changes the model is served within one interval plus the new model's start:
    fetched and verified, started beside the old one and answering (nginx lists both slots and
    is never reloaded), then the old one stops. A model that fails leaves the old one serving
    and the environment Degraded.
    `mlops gitops status` shows what git wants and what runs. Stop with Ctrl-C.

    \b
    Example:
      mlops monitor serve &  mlops up   # staging on http://127.0.0.1:8000/, production on :8001
    """
    import time

    from core.errors import MlopsError
    from gitops.follow import Follower
    from infra.http import interrupt_once_on_signals

    interrupt_once_on_signals()
    ports = {"staging": staging_port, "production": production_port}
    ports = {env: port for env, port in ports.items() if not envs or env in envs}
    if len(set(ports.values())) != len(ports):
        raise click.BadParameter("staging and production need different ports", param_hint="--production-port")
    state_dir = project.root / UP_STATE
    follower = Follower(project, (repo or project.root).resolve(), branch, ports, state_dir, monitor)

    def say(state):
        model = state.running.rstrip("/").rsplit("/", 1)[-1][:12] or "none"
        line = f"{state.env}: {state.sync} {state.health}, serving {model}"
        line += f" at {state.revision[:12]}" if state.revision else ""
        why = "; ".join(filter(None, (state.error, state.reason)))
        click.echo(f"{line}, {state.url}{f' ({why})' if why else ''}", err=True)
        follower.save()

    problem = ""
    try:
        follower.head()  # a branch that is not there is an error now, not a line every interval
        follower.start(say)
        for what, url in (("the pages' feedback", monitor), ("the payload log", log_url)):
            if url and not _answers(url):
                click.echo(f"no monitor answers at {url}: {what} fails until `mlops monitor serve` runs", err=True)
        while True:
            try:
                follower.poll(state_dir, log_url, say)
                problem = ""
            except MlopsError as e:  # an unreadable commit: keep serving what runs, say it once
                if str(e) != problem:
                    click.echo(f"cannot follow {branch}: {e}", err=True)
                problem = str(e)
            time.sleep(interval)
    except KeyboardInterrupt:
        click.echo("mlops up stopped", err=True)
    finally:
        follower.stop()
