"""Validate every Kustomize tree the cluster is built from: schemas, policy, and kubeconform when present.

The trees are the two serving overlays, the Kubeflow objects (``k8s/base/kfp``) and
the Argo CD objects (``k8s/argocd``). Each is rendered once; every object is checked
against its schema (``core.manifests``, strict) and the policy (``gitops.policy``).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from core.manifests import ManifestError, object_problems, render
from core.overlays import ENVIRONMENTS
from gitops.policy import Finding, findings, name_of

SCHEMAS = Path("k8s/schemas")
TREES = {
    **{f"overlays/{env}": Path("k8s/overlays") / env for env in ENVIRONMENTS},
    "base/kfp": Path("k8s/base/kfp"),
    "argocd": Path("k8s/argocd"),
}


def render_tree(root: Path, name: str) -> list[dict]:
    if name not in TREES:
        raise ManifestError(f"unknown tree {name!r}; expected one of {', '.join(TREES)}")
    return render(root / TREES[name])


def render_all(root: Path, missing_ok: bool = False) -> dict[str, list[dict]]:
    """Every tree, rendered (kustomize runs in parallel: each call is a process).

    ``missing_ok``: a tree whose folder does not exist (at an old revision) renders as nothing.
    """
    names = [name for name in TREES if not missing_ok or (root / TREES[name]).is_dir()]
    with ThreadPoolExecutor(max_workers=len(TREES)) as pool:
        rendered = dict(pool.map(lambda name: (name, render_tree(root, name)), names))
    return {name: rendered.get(name, []) for name in TREES}


def schema_findings(tree: str, objects: list[dict], schema_dir: Path) -> list[Finding]:
    return [
        Finding(tree, name_of(obj), field, message)
        for obj in objects
        for field, message in object_problems(obj, schema_dir)
    ]


def kubeconform(rendered: dict[str, list[dict]], schema_dir: Path) -> list[Finding]:
    """``kubeconform -strict`` with the vendored schemas, when the binary is on PATH (CI has it)."""
    binary = shutil.which("kubeconform")
    if binary is None:
        return []
    found = []
    with tempfile.TemporaryDirectory() as tmp:
        for tree, objects in rendered.items():
            path = Path(tmp) / (tree.replace("/", "-") + ".yaml")
            path.write_text(yaml.safe_dump_all(objects))
            location = f"{schema_dir}/{{{{.Group}}}}/{{{{.ResourceKind}}}}_{{{{.ResourceAPIVersion}}}}.json"
            command = [binary, "-strict", "-summary", "-schema-location", location, "-output", "text", str(path)]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                for line in (result.stdout + result.stderr).splitlines():
                    if " - " in line and ("is invalid" in line or "failed" in line or "error" in line.lower()):
                        found.append(Finding(tree, "kubeconform", "-", line.strip()))
                if not found:
                    found.append(Finding(tree, "kubeconform", "-", (result.stdout + result.stderr).strip()))
    return found


def validate_all(root: Path, trees: list[str] | None = None) -> tuple[dict[str, list[dict]], list[Finding]]:
    """Render and check the trees; returns what was rendered and every finding (empty: all clean)."""
    rendered = render_all(root) if trees is None else {name: render_tree(root, name) for name in trees}
    schema_dir = root / SCHEMAS
    found = []
    for tree, objects in rendered.items():
        found += schema_findings(tree, objects, schema_dir)
        found += findings(tree, objects)
    found += kubeconform(rendered, schema_dir)
    return rendered, found
