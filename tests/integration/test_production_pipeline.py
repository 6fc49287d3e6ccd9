"""The committed compiled pipeline, run end to end with kfp.local in a fresh copy of the repo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.worktree import copy_worktree, make_remote
from tests.integration.conftest import sh
from training.candidates import CANDIDATES

pytestmark = pytest.mark.slow
STEPS = {"fetch-data", "validate-data", "train-candidate", "select-model", "gate", "publish", "propose"}


@pytest.fixture(scope="module")
def project(tmp_path_factory, root) -> Path:
    """A clone-like copy with its data pulled from the committed DVC remote."""
    repo = copy_worktree(root, tmp_path_factory.mktemp("pipeline") / "repo")
    sh("mlops", "data", "pull", cwd=repo)
    return repo


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("store")
    return {"MLOPS_STORE_ROOT": str(base / "store"), "MLOPS_CACHE_DIR": str(base / "cache")}


def run(project: Path, store: dict, *params: str, **env: str):
    summary = project / "summary.json"
    summary.unlink(missing_ok=True)
    args = [f"--param={p}" for p in params]
    result = sh("mlops", "pipeline", "run", *args, "--summary-json", summary, cwd=project, check=False, **store, **env)
    return result, json.loads(summary.read_text()) if summary.exists() else None


def published_ids(store: dict) -> list[str]:
    models = Path(store["MLOPS_STORE_ROOT"]) / "mpg-mlops" / "models" / "mpg"
    return sorted(p.name for p in models.iterdir()) if models.is_dir() else []


@pytest.fixture(scope="module")
def first_run(project, store):
    """The production path: data and params read at a git revision through DVC, as in the cluster."""
    return run(project, store, "data_revision=HEAD")


def test_compiled_pipeline_publishes_a_gated_model(first_run, store):
    result, summary = first_run
    assert result.returncode == 0, result.stdout + result.stderr
    assert summary["status"] == "published"
    assert summary["model_uri"] == f"s3://mpg-mlops/models/mpg/{summary['model_id']}/"
    assert published_ids(store) == [summary["model_id"]]
    assert summary["gate"]["passed"] and summary["metrics"]["rmse"] <= 2.8
    assert {s["name"] for s in summary["steps"]} == STEPS
    assert all(s["status"] == "SUCCESS" for s in summary["steps"])
    assert sum(s["name"] == "train-candidate" for s in summary["steps"]) == 4
    assert f"published {summary['model_uri']}" in result.stdout
    assert summary["algorithm"] in CANDIDATES
    rmse = f"{summary['metrics']['rmse']:.3f}"
    assert f"selected {summary['algorithm']} ({summary['model_id'][:12]}): trusted-holdout RMSE {rmse} mpg" in (
        result.stdout
    ), "the run ends saying what it chose and how it scored"
    for step in STEPS:
        assert step in result.stdout, "progress is shown per step"


def test_degraded_candidate_is_rejected_against_the_champion_and_nothing_is_published(first_run, project, store):
    champion = first_run[1]["model_uri"]
    result, summary = run(project, store, f"champion_uri={champion}", 'params_overrides=["train.candidates=[linear]"]')
    assert result.returncode == 3, result.stdout + result.stderr
    assert summary["status"] == "rejected" and summary["model_uri"] is None
    assert any(r.startswith("trusted_rmse_increase_vs_champion") for r in summary["gate"]["reasons"])
    assert "rejected by the gate" in result.stdout
    assert published_ids(store) == [first_run[1]["model_id"]]
    assert not {"publish", "propose"} & {s["name"] for s in summary["steps"] if s["status"] == "SUCCESS"}


@pytest.mark.parametrize(
    ("params", "env", "cause"),
    [
        (["data_revision=no-such-revision"], {}, "revision 'no-such-revision' not found"),
        ([], {"MLOPS_S3_ENDPOINT_URL": "http://127.0.0.1:9"}, "http://127.0.0.1:9"),
    ],
    ids=["missing-data-revision", "unreachable-store"],
)
def test_bad_input_fails_the_run_naming_the_cause_and_publishes_nothing(project, tmp_path, params, env, cause):
    fresh = {"MLOPS_STORE_ROOT": str(tmp_path / "store"), "MLOPS_CACHE_DIR": str(tmp_path / "cache")}
    result, summary = run(project, fresh, *params, **env)
    assert result.returncode == 1
    assert summary["status"] == "failed" and cause in summary["error"]
    assert cause in result.stderr
    assert published_ids(fresh) == []


def test_unknown_or_malformed_pipeline_parameter_is_refused_before_running(project, store):
    """A usage error (exit 2) before any step runs: a name the pipeline does not take, an override
    params.yaml refuses, a value that is not YAML."""
    result, summary = run(project, store, "colour=blue")
    assert result.returncode == 2 and summary is None
    assert "unknown pipeline parameter(s) colour" in result.stderr
    result, summary = run(project, store, "params_overrides=[train.trees=3]")
    assert result.returncode == 2 and summary is None and "train.trees" in result.stderr
    result, summary = run(project, store, "params_overrides=[a=[b]]")
    assert result.returncode == 2 and summary is None  # click usage error
    assert "not valid YAML" in result.stderr and "Traceback" not in result.stderr


def test_the_pipeline_pushes_the_staging_bump_as_a_merge_request(project, store, tmp_path):
    """The propose step clones the repo, bumps staging and pushes with merge-request options, as in
    the cluster; the bare remote records what GitLab would be asked (tests/gitops/conftest.py)."""
    remote = make_remote(tmp_path / "remote.git")
    work = tmp_path / "work"
    sh("git", "clone", "-q", project, work, cwd=tmp_path)
    model_file = work / "k8s/overlays/staging/model.yaml"
    served = "s3://mpg-mlops/models/mpg/" + "1" * 64 + "/"
    text = model_file.read_text()
    model_file.write_text(text.replace(text.split("storageUri: ")[1].split()[0], served))
    # A pushed repository names its DVC remote absolutely (s3:// in production); the committed local
    # remote's relative path would resolve inside the bare repository here.
    sh("dvc", "remote", "modify", "local", "url", project / "data" / "dvc-remote", cwd=work)
    sh("git", "commit", "-qam", "staging serves an older model", cwd=work)
    sh("git", "push", "-q", remote, "HEAD:refs/heads/main", cwd=work)
    result, summary = run(project, store, f"repo={remote}", "data_revision=main", "open_merge_request=true")
    assert result.returncode == 0, result.stdout + result.stderr
    assert summary["status"] == "published"
    changed = sh("git", "diff", "--name-only", "main", "mlops/bump-staging", cwd=remote).stdout.split()
    # The retrained model's id depends on the CPU's floating point (BLAS kernels differ): where it is
    # not a model main already ships, the bump ships it beside the overlay (data/models/<bucket>/<key>).
    shipped = "data/models/" + summary["model_uri"].removeprefix("s3://").rstrip("/")
    already = sh("git", "ls-tree", "-r", "--name-only", "main", shipped, cwd=remote).stdout.split()
    new_files = [] if already else [f"{shipped}/model.joblib", f"{shipped}/model.json"]
    expected = ["k8s/overlays/staging/model.yaml", *new_files]
    assert sorted(changed) == sorted(expected)
    bumped = sh("git", "show", "mlops/bump-staging:k8s/overlays/staging/model.yaml", cwd=remote).stdout
    assert summary["model_uri"] in bumped and served not in bumped
    pushes = [json.loads(line) for line in (remote / "pushes.jsonl").read_text().splitlines()]
    options = pushes[-1]["options"]
    assert "merge_request.create" in options and "merge_request.target=main" in options
    description = next(o for o in options if o.startswith("merge_request.description="))
    assert "Quality gate **passed**" in description
