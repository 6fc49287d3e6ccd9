"""Every ``MLOPS_*`` variable is a field of ``infra.settings.Settings`` (the one list, read once), and nothing
else in the product reads one from the environment."""

from __future__ import annotations

import re

import pytest

from infra.settings import Settings
from tests.conftest import ROOT

PRODUCT = ["core", "infra", "training", "serving", "gitops", "monitoring", "pipelines", "mlops"]
NAME = re.compile(r"\bMLOPS_[A-Z][A-Z0-9_]*\b")
#: CI/CD variables of GitLab (scripts/ci/variables.yaml), not the product's
CI_ONLY = {"MLOPS_READONLY_AWS_ACCESS_KEY_ID", "MLOPS_READONLY_AWS_SECRET_ACCESS_KEY", "MLOPS_BUILT_IMAGE",
           "MLOPS_BUILT_SERVING_IMAGE",
           "MLOPS_GIT_REMOTE"}  # fmt: skip


def fields() -> set[str]:
    return {f"MLOPS_{name.upper()}" for name in Settings.model_fields}


def test_every_variable_the_product_and_its_manifests_name_is_a_setting():
    named = set()
    for path in [p for package in PRODUCT for p in (ROOT / package).rglob("*.py")] + list(
        (ROOT / "k8s").rglob("*.yaml")
    ):
        named |= set(NAME.findall(path.read_text()))
    assert named - CI_ONLY <= fields(), sorted(named - CI_ONLY - fields())
    assert {"MLOPS_DEBUG", "MLOPS_FEEDBACK_TOKENS", "MLOPS_KFP_TOKEN", "MLOPS_GIT_TOKEN", "MLOPS_MONITOR_DB"} <= named


def test_only_settings_reads_the_environment_for_them():
    reads = re.compile(r"(os\.environ(\.get)?\s*[\[(]\s*|os\.getenv\(\s*|envvar\s*=\s*)[\"']MLOPS_")
    offenders = [
        str(path.relative_to(ROOT))
        for package in PRODUCT
        for path in (ROOT / package).rglob("*.py")
        if reads.search(path.read_text())
    ]
    assert offenders == []


@pytest.mark.parametrize(("variable", "value", "field", "expected"), [
    ("MLOPS_DEBUG", "1", "debug", True),
    ("MLOPS_KFP_HOST", "http://kfp:8888", "kfp_host", "http://kfp:8888"),
    ("MLOPS_MONITOR_DB", "", "monitor_db", None),
])  # fmt: skip
def test_a_variable_reaches_its_field(monkeypatch, variable, value, field, expected):
    monkeypatch.setenv(variable, value)
    assert getattr(Settings(), field) == expected


def test_secrets_do_not_show_in_the_settings_repr(monkeypatch):
    monkeypatch.setenv("MLOPS_GIT_TOKEN", "glpat-not-for-logs")
    assert "glpat-not-for-logs" not in repr(Settings())
