"""bump, promote, rollback and status: each reads or edits one environment's model file, and nothing else."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from core.atomic import atomic_write, within
from core.errors import MlopsError
from core.model_card import ModelCard
from core.uri import StoreURI
from gitops.diff import as_markdown, diff_rendered, render_at
from gitops.git import GitError, blob, git, history, show
from gitops.manifests import render_all
from gitops.mergerequest import Proposal, Proposed, propose
from infra.gitauth import scrub
from infra.overlays import ENVIRONMENTS, OverlayError, model_file, model_uri_in, with_model_uri
from infra.scratch import scratch_dir
from infra.shipped import overlay_uris, prune, ship, shipped_path, shipped_uris
from infra.store import ModelStore

Edit = Callable[[Path], list[Path]]
SUBJECT_WIDTH = 72  # characters of a commit subject `status` shows (the JSON has it whole)
BOT_TRAILER = "Mlops-Bot"  # commits carrying it never retrain (see .gitlab-ci.yml)


class GateRule(BaseModel):
    name: str = Field(max_length=100)
    observed: float
    threshold: float
    comparison: Literal["<=", ">="]
    passed: bool


class GateSummary(BaseModel):
    """What a merge request's description shows of a gate report (``mlops gate --report``)."""

    passed: bool
    champion_id: str | None = Field(default=None, max_length=64)
    rules: list[GateRule] = Field(max_length=50)


class GitOpsError(MlopsError):
    """A GitOps change cannot be made as asked."""


def bump_edit(env: str, uri: StoreURI) -> Edit:
    """Set ``env``'s model URI (one line of one file); no change when it is already that."""

    def edit(tree: Path) -> list[Path]:
        path = within(tree, model_file(env))
        text = path.read_text()
        updated = with_model_uri(text, uri, str(model_file(env)))
        if updated == text:
            return []
        atomic_write(path, lambda tmp: tmp.write_text(updated))
        return [model_file(env)]

    return edit


def promote_edit(source: str, target: str) -> Edit:
    """Copy ``source``'s model file over ``target``'s: the file names no environment, so it is one line."""
    if source == target:
        raise GitOpsError(f"promote from {source} to itself")

    def edit(tree: Path) -> list[Path]:
        text = within(tree, model_file(source)).read_text()
        model_uri_in(text, str(model_file(source)))
        destination = within(tree, model_file(target))
        if destination.read_text() == text:
            return []
        atomic_write(destination, lambda tmp: tmp.write_text(text))
        return [model_file(target)]

    return edit


def shipping(edit: Edit, store: ModelStore, root: Path, unshipped: list[StoreURI], pruning: bool = True) -> Edit:
    """``edit``, then every model the overlays name shipped in ``data/models/`` (see ``infra.shipped``) and,
    when ``pruning``, every other model removed from it (it stays in git history).

    A model to ship comes from the store, else from the git history of ``root``; one found in
    neither (a ``--force`` bump) is left unshipped and added to ``unshipped``. A promotion does
    not prune, so it stays a one-file diff: the model it promotes is shipped already, and what
    production served before leaves with the next bump.
    """

    def edit_and_ship(tree: Path) -> list[Path]:
        changed = edit(tree)
        if not changed:
            return []
        wanted = overlay_uris(tree)
        for uri in sorted(wanted - shipped_uris(tree).keys(), key=str):
            if store_holds(store, root, uri):
                changed += ship(tree, uri, store.fetch(uri))
            elif uri not in unshipped:
                unshipped.append(uri)
        return changed + (prune(tree, wanted) if pruning else [])

    return edit_and_ship


def store_holds(store: ModelStore, root: Path, uri: StoreURI) -> bool:
    """Does the store hold ``uri`` (after restoring it from the shipped models in git history if needed)?"""
    try:
        store.card(uri)
        return True
    except MlopsError:
        return restore_from_history(root, store, uri)


def restore_from_history(root: Path, store: ModelStore, uri: StoreURI) -> bool:
    """Publish ``uri`` into the store from the last commit whose ``data/models/`` held it; False if none did."""
    model = shipped_path(uri) / "model.joblib"
    found = git("log", "-1", "--format=%H", "--diff-filter=A", "HEAD", "--", model.as_posix(), cwd=root, check=False)
    commit = found.stdout.strip()
    if found.returncode or not commit:
        return False
    with scratch_dir(root / ".mlops" / "restore") as staging:
        folder = staging / uri.model_id
        folder.mkdir()
        for path in (model, shipped_path(uri) / "model.json"):
            data = blob(root, commit, path)
            if data is None:
                return False
            (folder / path.name).write_bytes(data)
        store.publish(folder, uri.repository)  # verifies the files against the id first
    return True


def uri_history(root: Path, env: str, revision: str = "HEAD") -> list[tuple[str, str, StoreURI]]:
    """(commit, subject, model URI) for each commit that changed ``env``'s model URI, newest first."""
    changes = []
    for commit, subject in history(root, model_file(env), revision):
        text = show(root, commit, model_file(env))
        if text is None:
            continue
        try:
            uri = model_uri_in(text, f"{model_file(env)} at {commit[:12]}")
        except OverlayError:
            continue  # a revision before the file took its present shape
        if changes and changes[-1][2] == uri:
            changes[-1] = (commit, subject, uri)  # an older commit set the same URI: it is the one that set it
        else:
            changes.append((commit, subject, uri))
    return changes


def rollback_target(root: Path, env: str, current: StoreURI, to: str | None) -> StoreURI:
    """The model URI to go back to: the one before ``current`` in the file's history, or the one at ``to``."""
    if to is not None:
        if git(
            "rev-parse", "--verify", "--quiet", "--end-of-options", f"{to}^{{commit}}", cwd=root, check=False
        ).returncode:
            raise GitOpsError(
                f"no such revision {to!r} in {root}: give a commit, branch or tag (git log {model_file(env)})"
            )
        text = show(root, to, model_file(env))
        if text is None:
            raise GitOpsError(f"{model_file(env)} does not exist at {to!r}")
        return model_uri_in(text, f"{model_file(env)} at {to}")
    earlier = [uri for _, _, uri in uri_history(root, env) if uri != current]
    if not earlier:
        raise GitOpsError(f"{model_file(env)} has never served another model: nothing to roll back to")
    return earlier[0]


@dataclass
class EnvironmentStatus:
    env: str
    model_uri: str
    model_id: str
    algorithm: str | None
    holdout: dict | None
    cv_rmse: float | None
    set_by_commit: str | None
    set_by_subject: str | None
    problem: str | None


def environment_status(root: Path, store: ModelStore, env: str) -> EnvironmentStatus:
    text = (root / model_file(env)).read_text()
    uri = model_uri_in(text, str(model_file(env)))
    card, problem = None, None
    try:
        card = store.card(uri)
    except MlopsError as e:
        problem = str(e)
    commit = subject = None
    try:
        changes = uri_history(root, env)
    except GitError:
        changes = []
    if changes and changes[0][2] == uri and show(root, "HEAD", model_file(env)) == text:
        commit, subject, _ = changes[0]
    elif changes:
        subject = "uncommitted change in the working tree"
    return EnvironmentStatus(
        env=env,
        model_uri=str(uri),
        model_id=uri.model_id,
        algorithm=card.algorithm if card else None,
        holdout=card.metrics.holdout.model_dump() if card else None,
        cv_rmse=card.metrics.cv_rmse_mean if card else None,
        set_by_commit=commit,
        set_by_subject=subject,
        problem=problem,
    )


def status(root: Path, store: ModelStore) -> list[EnvironmentStatus]:
    return [environment_status(root, store, env) for env in ENVIRONMENTS]


def status_table(rows: list[EnvironmentStatus], live: dict | None = None, cluster: dict | None = None) -> str:
    """Per environment what the checkout's overlay names and its card; with ``live`` (``mlops up``'s states by
    environment), what git wants there and what runs, in Argo CD's words; with ``cluster``, the rollout there."""
    lines = []
    for row in rows:
        lines.append(f"{row.env}: model {row.model_id[:12]}  {row.model_uri}")
        health = (cluster or {}).get(row.env)
        if health is not None:
            sync = "Synced" if health.serving == row.model_uri else "OutOfSync"
            lines.append(f"    cluster: {sync} {health.status}, {health.message}")
        state = (live or {}).get(row.env)
        if state is not None:
            wants, runs = (uri.rstrip("/").rsplit("/", 1)[-1][:12] or "none" for uri in (state.wanted, state.running))
            lines.append(
                f"    mlops up: {state.sync} {state.health}, git {state.revision[:12]} wants {wants}, "
                f"running {runs} on {state.url}"
                + (f" ({why})" if (why := "; ".join(filter(None, (state.error, state.reason)))) else "")
            )
        if row.algorithm:
            rmse, mae, r2 = (float((row.holdout or {}).get(k, "nan")) for k in ("rmse", "mae", "r2"))
            lines.append(
                f"    {row.algorithm}, holdout RMSE {rmse:.3f} MAE {mae:.3f} R² {r2:.3f}, CV RMSE {row.cv_rmse:.3f}"
            )
        else:
            lines.append(f"    card unavailable: {row.problem}")
        if row.set_by_commit:
            subject = row.set_by_subject or ""
            subject = subject if len(subject) <= SUBJECT_WIDTH else subject[: SUBJECT_WIDTH - 1] + "…"
            lines.append(f"    set by {row.set_by_commit[:12]} {subject}")
        elif row.set_by_subject:
            lines.append(f"    {row.set_by_subject}")
    return "\n".join(lines)


def status_json(rows: list[EnvironmentStatus], live: dict | None = None, cluster: dict | None = None) -> str:
    def up(env: str) -> dict | None:
        state = (live or {}).get(env)
        return None if state is None else {**asdict(state), "sync": state.sync}

    def rollout(row: EnvironmentStatus) -> dict | None:
        health = (cluster or {}).get(row.env)
        sync = None if health is None else "Synced" if health.serving == row.model_uri else "OutOfSync"
        return None if health is None else {**asdict(health), "sync": sync}

    return json.dumps({row.env: {**asdict(row), "up": up(row.env), "cluster": rollout(row)} for row in rows}, indent=2)


@dataclass(frozen=True)
class Applied:
    message: str
    proposed: Proposed | None = None


def apply_change(
    root: Path,
    action: str,
    env: str,
    uri: StoreURI,
    edit: Edit,
    card: ModelCard | None,
    gate_report: dict | None = None,
    proposal: Proposal | None = None,
) -> Applied:
    """Edit ``env``'s model file in the working tree, or commit the edit on a branch (and push it as a
    merge request whose title and description say which model, how good, and what the cluster gets)."""
    subject = title(env, uri, card)
    if proposal is None:
        changed = edit(root)
        return Applied(f"{subject}: {changed[0]} updated" if changed else f"{env} already serves {uri}: nothing to do")
    proposal = replace(proposal, title=subject, labels=["mlops", f"env::{env}"])

    def describe(worktree: Path) -> str:
        rendered = as_markdown(diff_rendered(render_at(worktree, "HEAD~1"), render_all(worktree)))
        return description(action, env, uri, card, gate_report, rendered)

    done = propose(root, proposal, edit, commit_message(subject, uri, action), describe if proposal.push else None)
    if done is None:
        return Applied(f"{env} already serves {uri} on {proposal.branch}: nothing to commit")
    if done.pushed:
        return Applied(f"{subject}: {pushed(done, proposal)}", done)
    return Applied(f"{subject}: committed {done.commit[:12]} on {proposal.branch}", done)


def pushed(done: Proposed, proposal: Proposal) -> str:
    """What a push did, saying whether the remote opened a merge request (GitLab answers with its URL)."""
    where = f"pushed {done.commit[:12]} to {scrub(proposal.remote)} {proposal.branch}"
    if done.merge_request:
        return f"{where}: merge request into {proposal.target} at {done.merge_request}"
    return f"{where} (the remote answered with no merge request: open one into {proposal.target} by hand)"


def title(env: str, uri: StoreURI, card: ModelCard | None, verb: str = "serve") -> str:
    """``staging: serve model 790aaa2b9421 (svr, holdout RMSE 2.082)``."""
    detail = ""
    if card is not None:
        detail = f" ({card.algorithm}, holdout RMSE {card.metrics.holdout.rmse:.3f})"
    return f"{env}: {verb} model {uri.model_id[:12]}{detail}"


def commit_message(subject: str, uri: StoreURI, action: str) -> str:
    return f"{subject}\n\n{uri}\n\nModel-Id: {uri.model_id}\n{BOT_TRAILER}: {action}\n"


def description(
    action: str, env: str, uri: StoreURI, card: ModelCard | None, gate_report: dict | None, rendered_diff: str
) -> str:
    """The merge request's description: what changes, how good the model is, the gate, the rendered diff."""
    lines = [f"**{action}**: `{env}` serves `{uri}`.", ""]
    if card is not None:
        h = card.metrics.holdout
        lines += [
            "| model | algorithm | holdout RMSE | MAE | R² | CV RMSE | data md5 |",
            "|---|---|---|---|---|---|---|",
            f"| `{card.id[:12]}` | {card.algorithm} | {h.rmse:.3f} | {h.mae:.3f} | {h.r2:.3f} "
            f"| {card.metrics.cv_rmse_mean:.3f} | `{card.data.md5[:12]}` |",
            "",
        ]
    if gate_report is not None:
        verdict = "passed" if gate_report.get("passed") else "FAILED"
        lines += [f"Quality gate **{verdict}** (champion `{str(gate_report.get('champion_id'))[:12]}`):", ""]
        lines += ["| rule | observed | threshold | result |", "|---|---|---|---|"]
        for rule in gate_report.get("rules", []):
            result = "pass" if rule["passed"] else "**FAIL**"
            lines.append(
                f"| {rule['name']} | {rule['observed']:.4g} | {rule['comparison']} {rule['threshold']:.4g} | {result} |"
            )
        lines.append("")
    lines += ["<details><summary>Rendered diff</summary>", "", rendered_diff, "", "</details>", ""]
    lines.append(f"_Opened by `mlops gitops {action}`; merging it is the approval ({BOT_TRAILER})._")
    return "\n".join(lines)


IMAGE_FILE = Path("infra/image.py")
KUSTOMIZATIONS = (Path("k8s/base/kustomization.yaml"), Path("k8s/base/kfp/kustomization.yaml"))
#: the compiled pipeline and its copy for the cluster (pipelines.compile.render writes both, equal)
IR_FILES = (Path("pipelines/production-pipeline.yaml"), Path("k8s/base/kfp/production-pipeline.yaml"))
_PINNED_IMAGE = re.compile(r"(?P<name>[a-z0-9.:-]+(?:/[a-z0-9._-]+)+)@(?P<digest>sha256:[0-9a-f]{64})")


def parse_image(text: str) -> tuple[str, str]:
    """(name, digest) of ``name@sha256:<64 hex>``; anything else (a tag) is refused."""
    match = _PINNED_IMAGE.fullmatch(text or "")
    if match is None:
        raise GitOpsError(f"{text!r} is not an image pinned by digest: expected registry/name@sha256:<64 hex>")
    return match["name"], match["digest"]


def _pinned(source: str, prefix: str) -> str:
    """``NAME@DIGEST`` from infra/image.py's ``{prefix}NAME`` and ``{prefix}DIGEST``."""
    return "{}@{}".format(*(re.search(rf'^{prefix}{k} = "([^"]+)"$', source, re.M)[1] for k in ("NAME", "DIGEST")))


def _repinned(source: str, prefix: str, name: str, digest: str) -> str:
    source = re.sub(rf'^{prefix}NAME = "[^"]+"$', f'{prefix}NAME = "{name}"', source, flags=re.M)
    return re.sub(rf'^{prefix}DIGEST = "[^"]+"$', f'{prefix}DIGEST = "{digest}"', source, flags=re.M)


def _kustomization_pin(text: str, path: Path, entry_name: str, name: str, digest: str) -> str:
    entry = re.compile(rf"(- name: {entry_name}\n(?:\s+#.*\n)*\s+newName: )\S+(\n\s+digest: )\S+")
    if not entry.search(text):
        raise GitOpsError(f"{path} has no images: entry for {entry_name} with newName and digest")
    return entry.sub(lambda m: f"{m[1]}{name}{m[2]}{digest}", text)


def image_edit(image: str, serving_image: str | None = None) -> Edit:
    """Pin the project image everywhere it is named: infra/image.py, the ``images:`` of both kustomizations,
    and the compiled pipeline and its copy for the cluster (whose steps name it; `mlops pipeline compile --check`
    in the merge request's CI confirms each equals a fresh compile); and ``serving_image`` (the Dockerfile's
    serving stage, which the predictor runs) in infra/image.py and k8s/base."""
    name, digest = parse_image(image)
    serving = parse_image(serving_image) if serving_image else None

    def edit(tree: Path) -> list[Path]:
        source = (tree / IMAGE_FILE).read_text()
        old = _pinned(source, "")
        unchanged = old == image and (serving is None or _pinned(source, "SERVING_") == serving_image)
        if unchanged:
            return []
        source = _repinned(source, "", name, digest)
        if serving:
            source = _repinned(source, "SERVING_", *serving)
        updated = {IMAGE_FILE: source, **{ir: (tree / ir).read_text().replace(old, image) for ir in IR_FILES}}
        for path in KUSTOMIZATIONS:
            text = _kustomization_pin((tree / path).read_text(), path, "mpg-mlops", name, digest)
            if serving and path == KUSTOMIZATIONS[0]:
                text = _kustomization_pin(text, path, "mpg-mlops-serving", *serving)
            updated[path] = text
        for path, text in updated.items():
            atomic_write(within(tree, path), lambda tmp, text=text: tmp.write_text(text))
        return list(updated)

    return edit
