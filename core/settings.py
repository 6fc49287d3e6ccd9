"""Runtime settings: the project root and ``MLOPS_``-prefixed environment variables.

Model and pipeline parameters live in ``params.yaml`` (see ``training.params``);
this module only answers "where" questions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Settings:
    """Where models are stored. ``MLOPS_S3_ENDPOINT_URL`` unset means the embedded local store."""

    store_root: Path
    s3_endpoint_url: str | None
    model_repository: str
    cache_dir: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        root = project_root()
        return cls(
            store_root=Path(env.get("MLOPS_STORE_ROOT") or root / ".mlops" / "store"),
            s3_endpoint_url=env.get("MLOPS_S3_ENDPOINT_URL") or None,
            model_repository=env.get("MLOPS_MODEL_REPOSITORY") or DEFAULT_MODEL_REPOSITORY,
            cache_dir=Path(env.get("MLOPS_CACHE_DIR") or root / ".mlops" / "cache"),
        )


#: Published models live at ``<repository>/<model id>/``.
DEFAULT_MODEL_REPOSITORY = "s3://mpg-mlops/models/mpg"
