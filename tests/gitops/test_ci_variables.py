"""Deploy secrets never reach merge-request code: every CI/CD variable is declared with its scope, and no job a
merge request runs (its own code: scripts/ci/common.sh installs it) sees a write-scope one.

GitLab itself keeps a protected variable out of pipelines of unprotected branches (a merge request's
pipeline runs on its source branch: gitlab-org/quality/testcases#156) and an environment-scoped one out of
jobs that do not name the environment. This test keeps the configuration honest: scripts/ci/variables.yaml
says which variables are write-scope (protected + environment-scoped), and `.gitlab-ci.yml` and the scripts
must agree with it. gitlab-ci-local (GitLab's rule evaluation, tests/gitops/test_gitlab_ci.py) confirms which
jobs a merge request creates.
"""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.gitops.test_gitlab_ci import MERGE_REQUEST, WATCHED, change, jobs

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts" / "ci"
#: Variables GitLab or the shell defines (not the project's settings).
PREDEFINED = re.compile(r"CI_\w+|GITLAB_\w+|PATH|PWD|HOME|BASH_SOURCE")
#: GitLab's own predefined credentials that can write (push to the project's registry, call its API as the job):
#: every job gets them, merge-request jobs included, so no merge-request job's script may use them. An image
#: pushed that way still reaches no cluster: the manifests pull only digests CI's protected build-image job
#: pinned through a reviewed merge request (docs/security.md).
GITLAB_WRITE = {"CI_JOB_TOKEN", "CI_REGISTRY_PASSWORD", "CI_DEPLOY_PASSWORD", "CI_DEPENDENCY_PROXY_PASSWORD"}
KEYWORDS = {"workflow", "stages", "variables", "default", "include"}
REFERENCE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


def load() -> tuple[dict, dict]:
    ci = yaml.safe_load((ROOT / ".gitlab-ci.yml").read_text())
    declared = yaml.safe_load((SCRIPTS / "variables.yaml").read_text())["variables"]
    return ci, declared


def job_names(ci: dict) -> list[str]:
    return [name for name, job in ci.items() if name not in KEYWORDS and not name.startswith(".") and "script" in job]


def rules(ci: dict, name: str) -> list[dict]:
    job = ci[name]
    for parent in [job.get("extends")] if isinstance(job.get("extends"), str) else job.get("extends", []):
        job = {**ci[parent], **job}
    return job.get("rules", [])


def on_merge_requests(ci: dict, name: str) -> bool:
    return any("merge_request_event" in rule.get("if", "") for rule in rules(ci, name))


FUNCTION = re.compile(r"^(\w+)\(\) \{.*?^\}", re.M | re.S)


def script_text(ci: dict, name: str, scripts: dict[str, str]) -> str:
    """The job's script lines, the scripts/ci files they run, and common.sh when those source it (each of its
    functions only when called)."""
    lines = ci[name]["script"]
    text = "\n".join([lines] if isinstance(lines, str) else lines)
    for called in re.findall(r"scripts/ci/([\w.-]+\.sh)", text):
        text += "\n" + scripts[called]
        if "common.sh" in scripts[called]:
            common = scripts["common.sh"]
            used = [f[0] for f in FUNCTION.finditer(common) if re.search(rf"^\s*{f[1]}\b", scripts[called], re.M)]
            text += "\n" + FUNCTION.sub("", common) + "\n" + "\n".join(used)
    return text


def assigned(text: str) -> set[str]:
    """Names a script sets itself (shell variables, loop variables, a dotenv report the next job reads)."""
    return {
        *re.findall(r"^\s*(?:export\s+|local\s+)?([A-Za-z_]\w*)=", text, re.M),
        *re.findall(r"(?:export |echo \"?)([A-Za-z_]\w*)=", text),
        *re.findall(r"\bfor ([A-Za-z_]\w*) in\b", text),
    }


def environment(ci: dict, name: str) -> str | None:
    env = ci[name].get("environment")
    return env.get("name") if isinstance(env, dict) else env


def problems(ci: dict, declared: dict, scripts: dict[str, str]) -> list[str]:
    """Every way the configuration lets a secret reach code it should not, or the declaration lie."""
    found = []
    names = job_names(ci)
    defined_in_file = set(ci.get("variables", {}))
    write = {v: d for v, d in declared.items() if d["scope"] == "write"}
    write_environments = {env for d in write.values() for env in d.get("environments", [])}
    for variable, d in declared.items():
        if d["scope"] not in ("read", "write"):
            found.append(f"{variable}: scope {d['scope']!r} is neither read nor write")
        found += [f"{variable}: its job {job} does not exist" for job in d["jobs"] if job not in names]
        if d["scope"] == "read" and d.get("masked") and not variable.startswith("MLOPS_READONLY_"):
            found.append(f"{variable}: a read-scope credential is a read-only one, named MLOPS_READONLY_*")
    for variable, d in write.items():
        if not d.get("environments") or "*" in d["environments"]:
            found.append(f"{variable}: a write-scope variable needs named environments (not '*')")
        for job in (j for j in d["jobs"] if j in names):
            if on_merge_requests(ci, job):
                found.append(f"{variable}: write-scope, but its job {job} runs on merge requests")
            if environment(ci, job) not in d.get("environments", []):
                found.append(f"{variable}: its job {job} names no environment of {d.get('environments')}")
    for job in names:
        text = script_text(ci, job, scripts)
        own = ci[job].get("variables", {})
        referenced = set(REFERENCE.findall(text)) | set(own) | set(REFERENCE.findall(" ".join(map(str, own.values()))))
        local = assigned(text).union(
            *(assigned(script_text(ci, needed, scripts)) for needed in ci[job].get("needs", []))
        )
        for variable in sorted(referenced - local - defined_in_file):
            if variable not in declared and not PREDEFINED.fullmatch(variable):
                found.append(f"{job}: reads {variable}, which scripts/ci/variables.yaml does not declare")
            elif variable in declared and job not in declared[variable]["jobs"]:
                found.append(f"{job}: reads {variable} but is not among its jobs in scripts/ci/variables.yaml")
        if on_merge_requests(ci, job):
            found += [
                f"{job}: runs on merge requests and reads write-scope {v}"
                for v in sorted(referenced & (set(write) | GITLAB_WRITE))
            ]
            if environment(ci, job) in write_environments:
                found.append(f"{job}: runs on merge requests in environment {environment(ci, job)}, a write scope's")
    return found


@pytest.fixture(scope="module")
def config() -> tuple[dict, dict, dict[str, str]]:
    ci, declared = load()
    return ci, declared, {p.name: p.read_text() for p in SCRIPTS.glob("*.sh")}


def test_no_merge_request_job_sees_a_write_credential_and_every_variable_is_declared(config):
    assert problems(*config) == []
    ci, declared, _ = config
    merge_request_jobs = {job for job in job_names(ci) if on_merge_requests(ci, job)}
    assert {"tests", "model-gate", "gitops-diff"} <= merge_request_jobs
    assert {v for v, d in declared.items() if d["scope"] == "write"} == {
        "MLOPS_GIT_TOKEN",
        "MLOPS_KFP_HOST",
        "MLOPS_KFP_TOKEN",
        "MLOPS_KFP_NAMESPACE",
    }
    assert not any(d["scope"] == "write" and set(d["jobs"]) & merge_request_jobs for d in declared.values())


def edit(config, change_):
    ci, declared, scripts = (copy.deepcopy(part) for part in config)
    change_(ci, declared, scripts)
    return problems(ci, declared, scripts)


BROKEN = {
    "a merge-request job prints the git token": lambda ci, d, s: s.__setitem__(
        "model-gate.sh", s["model-gate.sh"] + '\necho "$MLOPS_GIT_TOKEN" | base64\n'
    ),
    "a merge-request job names a deploy environment": lambda ci, d, s: ci["gitops-diff"].__setitem__(
        "environment", {"name": "staging"}
    ),
    "the KFP token is no longer write-scope": lambda ci, d, s: (
        d["MLOPS_KFP_TOKEN"].__setitem__("scope", "read") or d["MLOPS_KFP_TOKEN"].pop("environments")
    ),
    "a write-scope variable for every environment": lambda ci, d, s: d["MLOPS_GIT_TOKEN"].__setitem__(
        "environments", ["*"]
    ),
    "a job reads a variable nobody declared": lambda ci, d, s: s.__setitem__(
        "lint.sh", s["lint.sh"] + '\ncurl -H "PRIVATE-TOKEN: $MLOPS_GITLAB_API_TOKEN" https://x\n'
    ),
    "the model gate given write keys": lambda ci, d, s: d.__setitem__(
        "AWS_SECRET_ACCESS_KEY", {"scope": "write", "environments": ["training"], "jobs": ["model-gate"]}
    ),
    "the promotion runs without its environment": lambda ci, d, s: ci["promote-staging"].pop("environment"),
}


@pytest.mark.parametrize("name", BROKEN)
def test_each_leak_is_caught(config, name):
    assert edit(config, BROKEN[name]), f"{name}: not caught"


REGISTRY_LOGIN = '\necho "$CI_REGISTRY_PASSWORD" | crane auth login -u x --password-stdin registry\n'
#: GitLab's own credentials, which the review found exempted with every CI_* name: a merge request's job pushing to
#: the project's registry or calling the API as the job, each in another form.
GITLAB_LEAKS = {
    "a merge-request job logs in to the registry": (
        lambda ci, d, s: s.__setitem__("model-gate.sh", s["model-gate.sh"] + REGISTRY_LOGIN),
        "model-gate: runs on merge requests and reads write-scope CI_REGISTRY_PASSWORD",
    ),
    "a merge-request job uses the job token in braces": (
        lambda ci, d, s: s.__setitem__(
            "lint.sh", s["lint.sh"] + '\ncurl -H "JOB-TOKEN: ${CI_JOB_TOKEN}" https://g/api\n'
        ),
        "lint: runs on merge requests and reads write-scope CI_JOB_TOKEN",
    ),
    "a merge-request job's own variables pass the token on": (
        lambda ci, d, s: ci["gitops-diff"].setdefault("variables", {}).__setitem__("PUSH", "$CI_DEPLOY_PASSWORD"),
        "gitops-diff: runs on merge requests and reads write-scope CI_DEPLOY_PASSWORD",
    ),
}


@pytest.mark.parametrize("name", GITLAB_LEAKS)
def test_gitlabs_own_write_credentials_are_kept_from_merge_request_jobs(config, name):
    change_, expected = GITLAB_LEAKS[name]
    assert expected in edit(config, change_)


def test_the_jobs_a_merge_request_creates_are_the_ones_checked(config, repo):
    """GitLab's rules as gitlab-ci-local evaluates them: a merge request touching every watched path creates
    exactly the jobs the check treats as merge-request jobs."""
    ci = config[0]
    change(repo, WATCHED[0], branch="everything")
    for path in WATCHED[1:]:
        change(repo, path)
    assert set(jobs(repo, *MERGE_REQUEST)) == {job for job in job_names(ci) if on_merge_requests(ci, job)}


def test_the_store_is_read_with_the_read_only_key_pair_and_a_missing_one_is_named(tmp_path):
    """use_model_store from scripts/ci/common.sh, run as is (mlops stubbed: it only names the endpoint)."""
    function = re.search(r"^use_model_store\(\) \{.*?^\}", (SCRIPTS / "common.sh").read_text(), re.M | re.S)[0]
    script = f'{function}\nmlops() {{ echo http://store:9000; }}\nuse_model_store\necho "$AWS_ACCESS_KEY_ID $AWS_SECRET_ACCESS_KEY $MLOPS_S3_ENDPOINT_URL"'  # noqa: E501
    env = {"PATH": "/usr/bin:/bin", "MLOPS_READONLY_AWS_ACCESS_KEY_ID": "ro-id",
           "MLOPS_READONLY_AWS_SECRET_ACCESS_KEY": "ro-secret", "AWS_ACCESS_KEY_ID": "write-id"}  # fmt: skip
    result = subprocess.run(["bash", "-euc", script], env=env, capture_output=True, text=True)
    assert result.stdout.split() == ["ro-id", "ro-secret", "http://store:9000"], result.stderr
    del env["MLOPS_READONLY_AWS_SECRET_ACCESS_KEY"]
    result = subprocess.run(["bash", "-euc", script], env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "MLOPS_READONLY_AWS_SECRET_ACCESS_KEY is not set" in result.stderr


def test_the_readme_lists_each_variable_with_its_scope_and_jobs(config, root):
    _, declared, _ = config
    readme = (root / "docs/gitops.md").read_text()
    for variable, d in declared.items():
        scope = "write: protected, environments " + ", ".join(d["environments"]) if d["scope"] == "write" else "read"
        row = f"| `{variable}` | {scope} | {', '.join(d['jobs'])} | {d['what']} |"
        assert row in readme, f"docs/gitops.md CI variables table lacks: {row}"
