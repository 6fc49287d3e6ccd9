"""What a change does to the cluster: the object-level diff of every rendered tree, as text or markdown.

Both sides are rendered with kustomize (the base side from ``git archive`` of the
manifests at a revision), then objects are matched by kind, namespace and name, so
the diff shows what Argo CD would apply, not which files moved.
"""

from __future__ import annotations

import difflib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from gitops.git import export
from gitops.manifests import TREES, render_all

MANIFESTS = "k8s"
MAX_LINES = 400  # per rendering; an MR description stays readable


@dataclass(frozen=True)
class ObjectChange:
    tree: str
    name: str  # Kind/namespace/name
    change: str  # added | removed | changed
    lines: list[str]  # unified diff of the YAML


def _key(obj: dict) -> str:
    meta = obj.get("metadata", {})
    return f"{obj.get('kind')}/{meta.get('namespace', '-')}/{meta.get('name')}"


def _dump(obj: dict | None) -> list[str]:
    return yaml.safe_dump(obj, sort_keys=True).splitlines() if obj else []


def render_at(root: Path, revision: str, trees: tuple[str, ...] = tuple(TREES)) -> dict[str, list[dict]]:
    """Every tree (or those named) as it rendered at ``revision`` (the manifests only, from ``git archive``)."""
    with tempfile.TemporaryDirectory() as tmp:
        export(root, revision, Path(tmp), f"{MANIFESTS}/")
        return render_all(Path(tmp), missing_ok=True, trees=trees)


def diff_rendered(old: dict[str, list[dict]], new: dict[str, list[dict]]) -> list[ObjectChange]:
    changes = []
    for tree in sorted(set(old) | set(new)):
        before = {_key(o): o for o in old.get(tree, [])}
        after = {_key(o): o for o in new.get(tree, [])}
        for key in sorted(set(before) | set(after)):
            if before.get(key) == after.get(key):
                continue
            change = "added" if key not in before else "removed" if key not in after else "changed"
            lines = list(difflib.unified_diff(_dump(before.get(key)), _dump(after.get(key)), key, key, lineterm=""))
            changes.append(ObjectChange(tree, key, change, lines[2:]))  # drop the ---/+++ header
    return changes


def diff_against(root: Path, revision: str) -> list[ObjectChange]:
    """The rendered difference between ``revision`` and the working tree."""
    return diff_rendered(render_at(root, revision), render_all(root))


def as_text(changes: list[ObjectChange]) -> str:
    if not changes:
        return "no change to any rendered object"
    out = []
    for change in changes:
        out.append(f"{change.tree}: {change.change} {change.name}")
        out += [f"    {line}" for line in change.lines]
    return "\n".join(_clip(out))


def as_markdown(changes: list[ObjectChange]) -> str:
    if not changes:
        return "No change to any rendered object."
    out = [f"**{len(changes)} rendered object(s) change**", ""]
    for tree in dict.fromkeys(c.tree for c in changes):
        out.append(f"#### `{tree}`")
        for change in (c for c in changes if c.tree == tree):
            out += [f"- {change.change} `{change.name}`", "", "```diff", *change.lines, "```", ""]
    clipped = _clip(out)
    if sum(line.startswith("```") for line in clipped) % 2:
        clipped.append("```")  # the cut fell inside a code block
    return "\n".join(clipped)


def _clip(lines: list[str]) -> list[str]:
    if len(lines) <= MAX_LINES:
        return lines
    return [*lines[:MAX_LINES], f"... {len(lines) - MAX_LINES} more lines (mlops gitops diff shows all)"]
