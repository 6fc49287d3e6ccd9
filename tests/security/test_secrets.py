"""No secret anywhere in the repository's history (detect-secrets over every blob of every ref)."""

from __future__ import annotations

from tests.integration.conftest import sh
from tests.security.history import ALLOWED, allowed, scan_history


def test_no_secret_in_any_version_of_any_file(root):
    findings = [f for f in scan_history(root) if not allowed(f)]
    assert findings == [], "\n".join(map(str, findings))


def test_the_scan_finds_a_secret_that_was_committed_and_then_removed(tmp_path):
    """The scanner is not blind: a key committed once and deleted in the next commit is still found."""
    sh("git", "init", "-q", "-b", "main", cwd=tmp_path)
    config = tmp_path / "settings.py"
    config.write_text('AWS_SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzZ1b2x3c4"\n')
    sh("git", "add", ".", cwd=tmp_path)
    sh("git", "commit", "-qm", "oops", cwd=tmp_path)
    config.write_text('AWS_SECRET_ACCESS_KEY = os.environ["AWS_SECRET_ACCESS_KEY"]\n')
    sh("git", "commit", "-qam", "read it from the environment", cwd=tmp_path)
    assert "wJalr" not in config.read_text()
    findings = [f for f in scan_history(tmp_path) if not allowed(f)]
    assert {(f.path, f.line) for f in findings} == {("settings.py", 1)}


def test_every_allowed_finding_is_explained():
    assert all(len(reason) > 10 for reason in ALLOWED.values())
