"""A copy of the repository as a clone holds it, and a bare remote standing in for GitLab: what benchmarks,
the loop scenario and the tests run the real commands in.

The bare remote stands in for GitLab, which cannot run here: like GitLab it advertises push options and
receives them in its hooks; unlike GitLab it opens no merge request, it writes down what it was asked
(``pushes.jsonl``) for the caller to read, and a merge is a push of the branch onto the target.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from gitops.git import export


def copy_worktree(root: Path, dest: Path, revision: str | None = None) -> Path:
    """Copy what a clone of ``root`` holds into a new git repo at ``dest``: the working tree's tracked and
    unignored files, or with ``revision`` that commit's files alone (``git archive``)."""
    if revision is not None:
        export(root, revision, dest)
    else:
        listed = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.split("\0")
        for name in filter(None, listed):
            if (root / name).is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(root / name, dest / name)
    identity = ["-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], [*identity, "commit", "-q", "-m", "copy"]):
        subprocess.run(["git", *args], cwd=dest, check=True, capture_output=True)
    return dest


RECORDING_HOOK = """#!/usr/bin/env python3
import json, os, sys
options = [os.environ[f"GIT_PUSH_OPTION_{i}"] for i in range(int(os.environ.get("GIT_PUSH_OPTION_COUNT", "0")))]
updates = [line.split() for line in sys.stdin.read().splitlines()]
with open("pushes.jsonl", "a") as log:  # hooks run in the bare repository
    log.write(json.dumps({"options": options, "updates": updates}) + "\\n")
"""


def make_remote(path: Path) -> Path:
    _git_sh("git", "init", "-q", "--bare", "-b", "main", path, cwd=path.parent)
    _git_sh("git", "config", "receive.advertisePushOptions", "true", cwd=path)
    hook = path / "hooks" / "pre-receive"
    hook.write_text(RECORDING_HOOK)
    hook.chmod(0o755)
    return path


def _git_sh(*args, cwd: Path) -> None:
    subprocess.run([str(a) for a in args], cwd=cwd, check=True, capture_output=True)
