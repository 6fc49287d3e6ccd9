"""Runtime settings: the project root and ``MLOPS_``-prefixed environment variables, read once.

Model and pipeline parameters live in ``params.yaml`` (see ``training.params``);
this module only answers "where" questions.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

MARKER = "params.yaml"


def find_project_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) holding ``params.yaml``.

    ``MLOPS_PROJECT_ROOT`` wins when set; an installed copy falls back to the folder
    beside this package, and finally to the working directory.
    """
    if env := os.environ.get("MLOPS_PROJECT_ROOT"):
        return Path(env).resolve()
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / MARKER).is_file():
            return folder
    beside = Path(__file__).resolve().parents[1]
    return beside if (beside / MARKER).is_file() else start


@lru_cache(maxsize=1)
def project_root() -> Path:
    """Cached ``find_project_root()`` for the running process."""
    return find_project_root()
