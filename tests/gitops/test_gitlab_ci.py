"""`.gitlab-ci.yml` through gitlab-ci-local (GitLab's schema, rules and `changes:` evaluated as GitLab would).

gitlab-ci-local stands in for a GitLab server, which cannot run here: it validates the
file against GitLab's JSON schema and evaluates `rules` (`changes:` against
`origin/main`, as a merge request or a push to main sees them); the jobs themselves
are not run.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import sh

ROOT = Path(__file__).resolve().parents[2]
GITLAB_CI_LOCAL = ROOT / "tests" / "tools" / "node_modules" / ".bin" / "gitlab-ci-local"
CHECKS = ["lint", "tests", "manifests", "kubeconform", "compiled-pipeline", "gitops-diff", "dependency-audit"]


def jobs(repo: Path, *variables: str) -> list[str]:
    """The jobs the pipeline would create (when:never left out)."""
    command = [str(GITLAB_CI_LOCAL), "--list-json", *(arg for v in variables for arg in ("--variable", v))]
    result = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return [job["name"] for job in json.loads(result.stdout) if job["when"] != "never"]


def change(repo: Path, path: str, message: str = "change", branch: str | None = None) -> None:
    if branch:
        sh("git", "checkout", "-q", "-b", branch, cwd=repo)
    with open(repo / path, "a") as handle:
        handle.write("\n# changed\n")
    sh("git", "add", path, cwd=repo)
    sh("git", "commit", "-qm", message, cwd=repo)


MERGE_REQUEST = ("CI_PIPELINE_SOURCE=merge_request_event", "CI_MERGE_REQUEST_TARGET_BRANCH_NAME=main")
PUSH = ("CI_PIPELINE_SOURCE=push",)
#: Every path a rule of .gitlab-ci.yml looks at. GitLab evaluates `rules:changes` as true in a pipeline
#: without a push event (schedule, web, API: docs "rules:changes", "always true ... for new branches and
#: pipelines without a Git push event"); gitlab-ci-local compares with origin/main instead. So for those
#: sources the tests change every watched path first: gitlab-ci-local then sees what GitLab assumes, and
#: only the CI_PIPELINE_SOURCE conditions can keep a job out.
WATCHED = ["data/auto-mpg.csv.dvc", "data/trusted/holdout.csv.dvc", "data/seed/auto-mpg.csv", "params.yaml",
           "dvc.yaml", "training/train.py", "infra/image.py", "pipelines/production-pipeline.yaml",
           "Dockerfile", "k8s/overlays/staging/model.yaml", "k8s/overlays/production/model.yaml"]  # fmt: skip


def test_a_merge_request_changing_params_runs_the_checks_and_the_model_gate(repo):
    change(repo, "params.yaml", branch="tune")
    assert jobs(repo, *MERGE_REQUEST) == [*CHECKS, "model-gate"]


@pytest.mark.parametrize("path", ["data/trusted/holdout.csv.dvc", "data/seed/auto-mpg.csv"])
def test_a_merge_request_changing_what_the_gate_judges_against_runs_the_model_gate(repo, path):
    """The trusted holdout and the seed are the gate's references: a change to either is gated (data/*.dvc
    alone did not match a file one folder down)."""
    change(repo, path, branch="references")
    assert jobs(repo, *MERGE_REQUEST) == [*CHECKS, "model-gate"]


def test_a_merge_request_changing_docs_runs_the_checks_only(repo):
    change(repo, "README.md", branch="docs")
    assert jobs(repo, *MERGE_REQUEST) == CHECKS


def test_a_merge_request_changing_training_code_runs_the_model_gate_on_that_code(repo):
    change(repo, "training/train.py", branch="code")
    assert jobs(repo, *MERGE_REQUEST) == [*CHECKS, "model-gate"]


def test_the_nightly_schedule_runs_the_dependency_audit_only_whatever_changed(repo):
    for path in WATCHED:
        change(repo, path)
    assert jobs(repo, "CI_PIPELINE_SOURCE=schedule") == ["dependency-audit"]


def test_a_pipeline_run_from_the_web_audits_and_offers_training_by_hand_only(repo):
    for path in WATCHED:
        change(repo, path)
    listed = jobs_with_when(repo, "CI_PIPELINE_SOURCE=web")
    assert listed == [("dependency-audit", "on_success"), ("submit-training", "manual")]


def test_a_push_of_a_data_version_submits_training(repo):
    change(repo, "data/auto-mpg.csv.dvc", "new data version")
    assert jobs(repo, *PUSH) == ["submit-training"]


def test_a_push_of_code_builds_the_image_and_proposes_it_and_trains_only_once_it_is_pinned(repo):
    change(repo, "training/train.py", "selection tweak")
    assert jobs(repo, *PUSH) == ["build-image", "build-serving-image", "propose-image"]


def test_a_push_of_the_pinned_image_trains_and_never_builds_again(repo):
    """The merge of propose-image's request: it changes image.py, the compiled pipeline and the
    kustomizations. Building again would propose again, for ever."""
    for path in ("infra/image.py", "pipelines/production-pipeline.yaml", "k8s/base/kustomization.yaml"):
        change(repo, path, "image: pin registry/mpg@sha256:...")
    assert jobs(repo, *PUSH) == ["submit-training"]


def test_a_push_of_the_staging_model_file_promotes_and_never_trains(repo):
    change(repo, "k8s/overlays/staging/model.yaml", "staging: serve model x")
    assert jobs(repo, *PUSH) == ["promote-staging"]


def test_a_push_of_the_production_model_file_verifies_production(repo):
    change(repo, "k8s/overlays/production/model.yaml", "production: serve model x")
    assert jobs(repo, *PUSH) == ["verify-production"]


def test_a_merged_bot_bump_promotes_and_never_trains_without_its_trailer(repo):
    """GitLab's default merge commit keeps the merge request's title and description, not the trailers of the
    commits it merges: the guard is the paths a bump changes (its model file and data/models/)."""
    sh("git", "checkout", "-q", "-b", "mlops/bump-staging", cwd=repo)
    change(repo, "k8s/overlays/staging/model.yaml", "staging: serve model x\n\nMlops-Bot: bump")
    (repo / "data" / "models" / "new-model.json").write_text("{}\n")
    sh("git", "add", "data/models", cwd=repo)
    sh("git", "commit", "-qm", "ship model x", cwd=repo)
    sh("git", "checkout", "-q", "main", cwd=repo)
    sh("git", "merge", "-q", "--no-ff", "-m", "Merge branch 'mlops/bump-staging' into 'main'", "mlops/bump-staging",
       cwd=repo)  # fmt: skip
    message = sh("git", "log", "-1", "--format=%B", cwd=repo).stdout
    assert "Mlops-Bot" not in message
    assert jobs(repo, *PUSH, f"CI_COMMIT_MESSAGE={message}") == ["promote-staging"]


def test_every_file_of_the_image_but_its_pins_triggers_a_build(root):
    """.image-inputs lists infra/ file by file (GitLab's changes: cannot exclude): none may be missing, and
    neither the pins nor the compiled pipeline may be matched (their merge request would build again, for ever)."""
    from fnmatch import fnmatch

    ci = yaml.safe_load((root / ".gitlab-ci.yml").read_text())
    listed = ci[".image-inputs"]
    tracked = subprocess.run(["git", "ls-files", "infra", "pipelines"], cwd=root, capture_output=True, text=True)
    files = [f for f in tracked.stdout.split() if f.endswith(".py") or f.startswith("infra/")]
    pins = {"infra/image.py", "pipelines/production-pipeline.yaml"}
    for path in files:
        matched = any(fnmatch(path, pattern.replace("**/*", "*")) for pattern in listed)
        assert matched == (path not in pins), path


def jobs_with_when(repo: Path, *variables: str) -> list[tuple[str, str]]:
    command = [str(GITLAB_CI_LOCAL), "--list-json", *(arg for v in variables for arg in ("--variable", v))]
    result = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return [(job["name"], job["when"]) for job in json.loads(result.stdout) if job["when"] != "never"]


# --- what GitLab must never cancel, and what must run in order (gitlab-org/gitlab#412473) -----------------------

SIDE_EFFECTS = ["build-image", "build-serving-image", "propose-image", "submit-training", "promote-staging",
                "verify-production"]  # fmt: skip


def test_a_pipeline_on_main_is_never_auto_cancelled_and_no_job_with_a_side_effect_is_interruptible():
    """A main pipeline's jobs act on its own push (`changes:`): one cancelled by the next merge never runs again.
    So main's workflow rules say auto_cancel on_new_commit none, and each job that pushes, submits or promotes is
    interruptible false (the default is true: GitLab cancels a pipeline whose started jobs all are)."""
    ci = yaml.safe_load((ROOT / ".gitlab-ci.yml").read_text())
    for rule in ci["workflow"]["rules"]:
        if "$CI_DEFAULT_BRANCH" in rule["if"]:
            assert rule.get("auto_cancel") == {"on_new_commit": "none"}, rule
    for name in SIDE_EFFECTS:
        job = {**ci.get(ci[name].get("extends", ""), {}), **ci[name]}
        assert job.get("interruptible") is False, name


def test_every_ci_image_is_pinned_by_digest():
    ci = yaml.safe_load((ROOT / ".gitlab-ci.yml").read_text())
    images = [job["image"]["name"] for job in ci.values() if isinstance(job, dict) and "image" in job]
    assert len(images) >= 3
    for image in images:
        assert re.fullmatch(r"[a-z0-9./-]+:[\w.-]+@sha256:[0-9a-f]{64}", image), image


def test_an_older_pipelines_promotion_stands_down_when_a_newer_bump_landed(tmp_path):
    """Two quick bumps: the older pipeline's promote-staging would smoke-test and promote a model staging no
    longer names. scripts/ci/common.sh superseded() says so and the job ends with nothing to do."""
    remote, work = tmp_path / "remote.git", tmp_path / "work"
    sh("git", "init", "-q", "--bare", "-b", "main", remote, cwd=tmp_path)
    sh("git", "clone", "-q", remote, work, cwd=tmp_path)
    model = work / "k8s/overlays/staging/model.yaml"
    model.parent.mkdir(parents=True)
    commits = []
    for uri in ("s3://m/a/", "s3://m/b/"):
        model.write_text(f"storageUri: {uri}\n")
        sh("git", "add", "-A", cwd=work)
        sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", uri, cwd=work)
        sh("git", "push", "-q", "origin", "HEAD:main", cwd=work)
        commits.append(sh("git", "rev-parse", "HEAD", cwd=work).stdout.strip())
    common = ROOT / "scripts/ci/common.sh"
    function = re.search(r"^superseded\(\) \{.*?^\}", common.read_text(), re.M | re.S)[0]

    def superseded(commit: str) -> subprocess.CompletedProcess:
        script = f"{function}\nsuperseded k8s/overlays/staging/model.yaml"
        env = {"CI_COMMIT_SHA": commit, "CI_DEFAULT_BRANCH": "main", "PATH": "/usr/bin:/bin"}
        return subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True)

    older, newer = superseded(commits[0]), superseded(commits[1])
    assert older.returncode == 0 and "changed again on main" in older.stdout
    assert newer.returncode == 1 and newer.stdout == ""
