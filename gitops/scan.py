"""checkov, a generic scanner, over what reaches the cluster and CI: every rendered tree, the Dockerfile and
``.gitlab-ci.yml``. It complements ``gitops.policy`` (the project's own rules: immutable model URIs, fences,
Argo CD scope, registries) with the checks a scanner knows; checkov does not read InferenceService or
ServingRuntime containers, which the policy does.

A check may be skipped only in place and with a reason: ``checkov.io/skipN: CKV_ID=reason`` on the object,
``# checkov:skip=CKV_ID: reason`` in the Dockerfile. A skip without a reason is a finding too. checkov runs
offline (``--skip-download``: no Bridgecrew platform, no policy download) from its own virtualenv
(``make scan`` installs it, pinned by tests/tools/checkov-requirements.txt).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from core.errors import MlopsError
from gitops.manifests import render_all

FRAMEWORKS = ("kubernetes", "dockerfile", "gitlab_ci")
SCANNED_FILES = ("Dockerfile", ".gitlab-ci.yml")
NO_REASON = "No comment provided"  # what checkov reports for a skip without one


class ScanError(MlopsError):
    """checkov could not run, or it found something."""


@dataclass
class ScanResult:
    passed: int = 0
    skipped: list[str] = field(default_factory=list)  # "where: CKV_ID (reason)"
    failed: list[str] = field(default_factory=list)  # "where: CKV_ID name"

    def summary(self) -> str:
        skipped, failed = len(self.skipped), len(self.failed)
        return f"checkov: {self.passed} checks passed, {skipped} skipped with a reason, {failed} failed"


def _source(path: str, files: dict[str, str]) -> str:
    return files.get(Path(path).name, path.lstrip("/"))


def scan(root: Path, checkov: str) -> ScanResult:
    """Render the trees into a scratch folder beside the Dockerfile and the CI file, run checkov once over it."""
    with tempfile.TemporaryDirectory(prefix="mlops-scan-") as scratch:
        files = {}
        for tree, objects in render_all(root).items():
            name = tree.replace("/", "-") + ".yaml"
            (Path(scratch) / name).write_text(yaml.safe_dump_all(objects, sort_keys=False))
            files[name] = tree
        for name in SCANNED_FILES:
            shutil.copy(root / name, Path(scratch) / name)
            files[name] = name
        command = [checkov, "-d", scratch, "--framework", *FRAMEWORKS, "--skip-download", "-o", "json"]
        try:
            run = subprocess.run(command, capture_output=True, text=True, timeout=600)
        except OSError as e:
            raise ScanError(f"cannot run checkov ({checkov}): {e.strerror}; `make scan` installs it") from e
    try:
        reports = json.loads(run.stdout)
    except json.JSONDecodeError as e:
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        raise ScanError(f"checkov failed (exit {run.returncode}): {last}") from e
    result = ScanResult()
    for report in reports if isinstance(reports, list) else [reports]:
        checks = report.get("results") or {}
        result.passed += int((report.get("summary") or {}).get("passed", 0))
        for check in checks.get("failed_checks") or []:
            where = f"{_source(check['file_path'], files)}: {check.get('resource', '?').lstrip('/')}"
            result.failed.append(f"{where}: {check['check_id']} {check['check_name']}")
        for check in checks.get("skipped_checks") or []:
            where = f"{_source(check['file_path'], files)}: {check.get('resource', '?').lstrip('/')}"
            reason = (check.get("check_result") or {}).get("suppress_comment") or NO_REASON
            if reason.strip() in ("", NO_REASON):
                result.failed.append(f"{where}: {check['check_id']} skipped without a reason: give one in place")
            else:
                result.skipped.append(f"{where}: {check['check_id']} ({reason.strip()})")
    return result
