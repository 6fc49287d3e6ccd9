"""Runtime settings: the project root and ``MLOPS_``-prefixed environment variables.

Model and pipeline parameters live in ``params.yaml`` (see ``training.params``);
this module only answers "where" questions.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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


class Settings(BaseSettings):
    """Where models are stored, from ``MLOPS_*`` environment variables, read once at the boundary.

    ``MLOPS_S3_ENDPOINT_URL`` unset means the embedded local store under
    ``MLOPS_STORE_ROOT`` (default ``<project>/.mlops/store``).
    """

    model_config = SettingsConfigDict(env_prefix="MLOPS_", extra="ignore", frozen=True)

    store_root: Path = Field(default_factory=lambda: project_root() / ".mlops" / "store")
    s3_endpoint_url: str | None = None
    model_repository: str = "s3://mpg-mlops/models/mpg"
    cache_dir: Path = Field(default_factory=lambda: project_root() / ".mlops" / "cache")

    @field_validator("s3_endpoint_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value):
        return value or None

    @classmethod
    def from_env(cls) -> Settings:
        return cls()


#: Published models live at ``<repository>/<model id>/``.
DEFAULT_MODEL_REPOSITORY = Settings.model_fields["model_repository"].default
