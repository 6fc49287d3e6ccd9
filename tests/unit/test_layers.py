"""The house as DESIGN draws it: five floors that only look down, no sibling on one floor importing another.

ground: core, and infra just above it (the plumbing: settings, store, overlays, nginx, git, DVC, image pins);
then training, serving and gitops (each only core and infra); then pipelines and monitoring; top: the CLI
(mlops) and bench, which the product never imports. Every import counts, lazy ones inside functions too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

FLOORS = {
    "core": 0,
    "infra": 1,
    "training": 2,
    "serving": 2,
    "gitops": 2,
    "pipelines": 3,
    "monitoring": 3,
    "mlops": 4,
    "bench": 4,
}


def imports(root: Path) -> set[tuple[str, str, str]]:
    """(importing folder, imported folder, file) for every first-party import between two folders."""
    found = set()
    for folder in FLOORS:
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in FLOORS and top != folder:
                        found.add((folder, top, path.relative_to(root).as_posix()))
    return found


def violations(root: Path) -> list[str]:
    """Each import that looks sideways or up: ``file: a -> b``."""
    return sorted(
        f"{path}: {source} -> {target}" for source, target, path in imports(root) if FLOORS[target] >= FLOORS[source]
    )


def test_every_import_looks_down():
    assert violations(ROOT) == []


def test_the_product_never_imports_the_benchmarks():
    assert not [entry for entry in imports(ROOT) if entry[1] == "bench"]


@pytest.mark.parametrize(
    ("where", "line", "found"),
    [
        ("gitops/policy.py", "from pipelines.image import NAME", "gitops/policy.py: gitops -> pipelines"),
        ("gitops/follow.py", "def f():\n    from serving.page import x", "gitops/follow.py: gitops -> serving"),
        ("mlops/cli.py", "import bench.cli", "mlops/cli.py: mlops -> bench"),
        ("core/uri.py", "from infra.settings import Settings", "core/uri.py: core -> infra"),
    ],
)
def test_the_check_finds_an_arrow_up_or_sideways(tmp_path, where, line, found):
    """The arrows the last review found (image pins a floor up, nginx in a sibling, the CLI knowing the
    benchmarks), planted again in a copy: each is named."""
    for folder in FLOORS:
        (tmp_path / folder).mkdir()
    (tmp_path / where).write_text(line + "\n")
    assert violations(tmp_path) == [found]
