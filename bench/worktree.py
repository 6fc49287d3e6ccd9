"""A copy of the repository as a clone holds it: what benchmarks and tests run the real commands in."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def copy_worktree(root: Path, dest: Path) -> Path:
    """Copy what a clone of ``root`` holds (tracked and unignored files) into a new git repo at ``dest``."""
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
