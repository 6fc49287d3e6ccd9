"""`mlops manifests scan`: the real checkov (pinned, `.venv-checkov`, installed by `make test`) over every
rendered tree, the Dockerfile and .gitlab-ci.yml. The repository scans clean with its skips justified in
place; what a scanner catches fails the command, and so does a skip without a reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT, one_line_error, run_mlops
from tests.gitops.test_manifests import _client_container, base, edit_yaml

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"


@pytest.fixture(scope="module")
def checkov() -> str:
    assert CHECKOV.is_file(), "checkov is not installed: `make test` (or `make scan`) installs it in .venv-checkov"
    return str(CHECKOV)


@pytest.fixture
def project(tmp_path) -> Path:
    """What the scan reads, in a copy a test may break."""
    shutil.copytree(ROOT / "k8s", tmp_path / "k8s")
    for name in ("Dockerfile", ".gitlab-ci.yml", "params.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def scan(project: Path, checkov: str, *args: str):
    return run_mlops("manifests", "scan", "--checkov", checkov, *args, cwd=project, timeout=600)


def test_the_repository_scans_clean_and_every_skip_has_its_reason(project, checkov):
    result = scan(project, checkov, "--show-skipped")
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.splitlines()[-1]
    assert summary.startswith("checkov: ") and summary.endswith(" 0 failed")
    assert int(summary.split()[1]) > 500, "the trees, the Dockerfile and the CI file were all scanned"
    skipped = [line for line in result.stdout.splitlines() if line.startswith("skipped: ")]
    assert {line.split(": ")[-1].split(" (")[0] for line in skipped} == {"CKV_K8S_40", "CKV_K8S_35", "CKV_DOCKER_2"}
    assert all(len(line.split(" (", 1)[1]) > 40 for line in skipped), "each skip says why"


def test_a_privileged_container_fails_the_scan_naming_tree_object_and_check(project, checkov):
    edit_yaml(base(project, "client/deployment.yaml"), lambda d: _client_container(d)["securityContext"].update(
        privileged=True))  # fmt: skip
    line = scan(project, checkov)
    assert line.returncode == 1 and "Traceback" not in line.stderr
    assert "overlays/staging: Deployment.mpg-staging.mpg-client: CKV_K8S_16" in line.stderr, line.stderr


def test_a_skip_without_a_reason_fails(project, checkov):
    dockerfile = project / "Dockerfile"
    text = dockerfile.read_text()
    dockerfile.write_text(text.replace(text.split("# checkov:skip=CKV_DOCKER_2", 1)[1].split("\n", 1)[0], ""))
    result = scan(project, checkov)
    assert result.returncode == 1 and "Dockerfile" in result.stderr
    assert "CKV_DOCKER_2 skipped without a reason" in result.stderr, result.stderr


def test_without_checkov_the_error_names_how_to_install_it(project, tmp_path):
    missing = one_line_error(scan(project, str(tmp_path / "no-checkov")))
    assert "cannot run checkov" in missing and "make scan" in missing
