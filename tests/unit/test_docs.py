"""The README is a map and the docs it points to are current: generated parts equal to what the code generates,
every link resolving, every command the README names a real one, the upgrade step the one the cluster test runs."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import mlops.docs as docs
from tests.cluster.test_upgrade import CLEAR_RECORDED_MODE, SAY_STANDARD

LINK = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")


def test_the_generated_docs_are_current(root):
    result = subprocess.run([sys.executable, "-m", "mlops.docs", "--check"], cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_stale_reference_is_one_line_naming_the_fix(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "cli.md"
    stale.write_text(docs.CLI_REFERENCE.read_text().replace("mlops cluster check", "mlops cluster chek"))
    monkeypatch.setattr(docs, "CLI_REFERENCE", stale)
    monkeypatch.setattr(docs, "ROOT", tmp_path)
    assert docs.main(["--check"]) == 1
    assert capsys.readouterr().err == "error: cli.md out of date with the code: run make docs and commit\n"
    assert "chek" in stale.read_text()  # --check writes nothing


def test_the_readme_is_a_map(root):
    assert len((root / "README.md").read_text().splitlines()) < 250


def test_every_link_of_the_readme_and_the_docs_resolves(root):
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    broken = [
        f"{page.relative_to(root)}: {target}"
        for page in pages
        for target, _ in LINK.findall(page.read_text())
        if not target.startswith("http") and not (page.parent / target).exists()
    ]
    assert broken == []


def test_every_command_the_readme_names_exists(root):
    reference = (root / "docs/cli.md").read_text()
    named = set(re.findall(r"^mlops ([a-z-]+(?: [a-z-]+)?)", (root / "README.md").read_text(), re.MULTILINE))
    assert named, "the README names commands"
    for command in named:
        words = command.split()
        assert f"## mlops {command}\n" in reference or f"## mlops {words[0]}\n" in reference, command


def test_the_upgrade_step_is_the_one_the_cluster_test_runs(root):
    text = (root / "docs/cluster.md").read_text()
    block = text.split("## Upgrading KServe from 0.15", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [shlex.split(line) for line in block.replace("\\\n", " ").splitlines() if line.startswith("kubectl")]
    assert commands == [["kubectl", *CLEAR_RECORDED_MODE], ["kubectl", *SAY_STANDARD]]
