"""What each pipeline step does, as plain functions over paths and strings.

The KFP components in ``pipelines.components`` are one-line wrappers around these,
so the steps are testable without Kubeflow and hold no training logic of their
own: they call ``training/`` and ``core/``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from core.atomic import atomic_write
from core.errors import DataValidationError
from core.uri import parse_model_uri
from infra.overlays import ENVIRONMENTS, model_file, model_uri_in
from infra.settings import project_root
from training.params import Params, apply_overrides, parse_params

PROPOSAL_TARGET = "k8s/overlays/staging"
PROPOSAL_BRANCH = "mlops/bump-staging"


def fetch_data(
    repo: str,
    revision: str,
    dvc_remote: str,
    overrides: list[str],
    champion: str,
    data_path: str,
    trusted_path: str,
    seed_path: str,
) -> tuple[Params, str]:
    """Write the training data to ``data_path``, the trusted holdout to ``trusted_path`` and the seed data (the
    gate's reference, in git) to ``seed_path``; return the validated params and the champion's URI.

    With ``repo`` and ``revision`` empty, the working copy as it is (local runs).
    Otherwise ``repo`` (a git URL, or empty for the working copy's history) at
    ``revision``: params.yaml from git, the data through DVC from ``dvc_remote``.
    ``champion`` ``staging`` or ``production`` means the model that overlay serves, read
    from the same revision; any other value must be a model URI (or empty: no champion).
    """
    from training.versioning import DataVersionError, read_versioned

    if not repo and not revision:
        root, where = project_root(), "the working copy"

        def read(path: str, remote: str | None = None) -> bytes:
            try:
                return (root / path).read_bytes()
            except FileNotFoundError as e:
                raise DataVersionError(f"{path} is not in the working copy; `mlops data pull` fetches the data") from e
    else:
        source, where = repo or str(project_root()), f"revision {revision}"

        def read(path: str, remote: str | None = None) -> bytes:
            return read_versioned(path, source, revision, remote)

    raw = yaml.safe_load(read("params.yaml")) or {}
    params = parse_params(apply_overrides(raw, overrides), f"params.yaml of {where}", overrides, "params_overrides")
    from training.gate import SEED

    written = ((params.data.path, data_path), (params.data.trusted_holdout, trusted_path), (str(SEED), seed_path))
    for tracked, target in written:
        content = read(tracked, dvc_remote or None)
        Path(target).parent.mkdir(parents=True, exist_ok=True)  # kfp's artifact folder
        atomic_write(Path(target), lambda tmp, content=content: tmp.write_bytes(content))
    if champion in ENVIRONMENTS:
        where_file = f"{model_file(champion)} of {where}"
        return params, str(model_uri_in(read(str(model_file(champion))).decode(), where_file))
    return params, str(parse_model_uri(champion)) if champion else ""


def validate_data(data_path: str, report_path: str) -> int:
    """Validate the fetched data and write the report; raise (failing the run) if invalid.

    Returns the number of rows left after cleaning.
    """
    from training.data import validate_file

    _, report = validate_file(Path(data_path))
    Path(report_path).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    if not report.valid:
        raise DataValidationError(f"the data is invalid:\n{report.summary()}")
    return report.rows - len(report.dropped_lines)


def train_candidate(name: str, data_path: str, params_json: str, model_dir: str) -> None:
    """Score one candidate by CV, fit it, save it as a model directory (one ParallelFor branch)."""
    from training.data import load_dataset
    from training.train import train_candidate as train

    train(name, load_dataset(Path(data_path)), Params.model_validate_json(params_json), Path(model_dir))


def select_model(candidate_dirs: list[str], params_json: str, model_dir: str) -> str:
    """Copy the best-scoring candidate to ``model_dir``; its card lists every candidate. Returns its id."""
    from core.model_card import read_card, write_card
    from training.selection import select

    params = Params.model_validate_json(params_json)
    loaded = [(Path(d), read_card(Path(d))) for d in candidate_dirs]
    cards = {card.algorithm: (path, card) for path, card in loaded}
    scores = [card.metrics.candidates[name] for name, (_, card) in cards.items()]
    winner = select(scores, params.train.candidates)
    source, card = cards[winner.name]
    shutil.copytree(source, model_dir)
    metrics = card.metrics.model_copy(update={"candidates": {s.name: s for s in scores}})
    write_card(Path(model_dir), card.model_copy(update={"metrics": metrics}))
    return card.id


def gate(
    model_dir: str,
    data_path: str,
    trusted_path: str,
    seed_path: str,
    params_json: str,
    champion_uri: str,
    report_path: str,
) -> bool:
    """Run the quality gate (judged on the trusted holdout); write its report; return whether it passed."""
    from infra.project import Project
    from training.data import load_dataset
    from training.gate import run_gate

    params = Params.model_validate_json(params_json)
    champion_dir, champion_id = Project().resolve(champion_uri) if champion_uri else (None, None)
    report = run_gate(
        Path(model_dir),
        load_dataset(Path(data_path)),
        params,
        load_dataset(Path(trusted_path)),
        champion_dir,
        champion_uri or None,
        champion_id,
        load_dataset(Path(seed_path)),
    )
    Path(report_path).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    print(report.table())
    return report.passed


def publish(model_dir: str, repository: str) -> str:
    """Publish the gated model; returns its immutable URI."""
    from infra.project import Project

    return Project().store.publish(Path(model_dir), repository).uri


def propose(
    model_uri: str,
    model_dir: str,
    gate_report_path: str,
    repo: str,
    open_merge_request: bool,
    target: str,
    proposal_path: str,
) -> dict:
    """Bump the staging overlay to ``model_uri``: as a merge request pushed to ``repo``, or recorded only.

    With ``open_merge_request`` the step clones ``repo`` (credentials from
    ``MLOPS_GIT_TOKEN``), commits the one-line change of the staging model file on
    ``PROPOSAL_BRANCH`` and pushes it with GitLab's merge-request push options, the
    gate report in the description. Either way the proposal is written as JSON.
    """
    import tempfile

    from core.model_card import read_card
    from core.uri import parse_store_uri
    from gitops.changes import apply_change, bump_edit, shipping
    from gitops.git import git
    from gitops.mergerequest import Proposal
    from infra.gitauth import scrub
    from infra.project import Project

    card = read_card(Path(model_dir))
    uri = parse_store_uri(model_uri)
    gate_report = json.loads(Path(gate_report_path).read_text())
    proposal = {
        "action": "bump-model-uri",
        "overlay": PROPOSAL_TARGET,
        "model_uri": model_uri,
        "model_id": card.id,
        "algorithm": card.algorithm,
        "metrics": {"cv_rmse_mean": card.metrics.cv_rmse_mean, "holdout": card.metrics.holdout.model_dump()},
        "merge_request": None,
    }
    if open_merge_request:
        if not repo:
            raise ValueError("open_merge_request needs the repo parameter: the git URL to push the bump to")
        with tempfile.TemporaryDirectory() as tmp:
            clone = Path(tmp) / "repo"
            git("clone", "--quiet", "--no-checkout", "--", repo, str(clone), cwd=Path(tmp))
            mr = Proposal(branch=PROPOSAL_BRANCH, target=target, remote="origin", push=True)
            edit = shipping(bump_edit("staging", uri), Project().store, clone, [])  # the model too
            applied = apply_change(clone, "bump", "staging", uri, edit, card, gate_report, mr)
        print(applied.message)
        done = applied.proposed
        proposal["merge_request"] = {
            "remote": scrub(repo),
            "branch": PROPOSAL_BRANCH,
            "target": target,
            "commit": done.commit if done else None,
            "pushed": bool(done and done.pushed),
        }
    Path(proposal_path).write_text(json.dumps(proposal, indent=2) + "\n")
    return proposal
