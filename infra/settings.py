"""Runtime settings: the project root and ``MLOPS_``-prefixed environment variables.

Model and pipeline parameters live in ``params.yaml`` (see ``training.params``);
this module only answers "where" questions.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MARKER = "params.yaml"


class _RootSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLOPS_", extra="ignore", frozen=True)

    #: The project folder (the one holding params.yaml) [default: the nearest one at or above the working
    #: directory, else the folder beside this package, else the working directory].
    project_root: Path | None = None


def find_project_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) holding ``params.yaml``.

    ``MLOPS_PROJECT_ROOT`` wins when set; an installed copy falls back to the folder
    beside this package, and finally to the working directory.
    """
    if explicit := _RootSettings().project_root:
        return explicit.resolve()
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


class Settings(_RootSettings):
    """Every ``MLOPS_*`` environment variable the product reads, read once at the boundary (this class is the
    list: tests/unit/test_settings.py fails on one read anywhere else).

    ``MLOPS_S3_ENDPOINT_URL`` unset means the embedded local store under
    ``MLOPS_STORE_ROOT`` (default ``<project>/.mlops/store``).
    """

    store_root: Path = Field(default_factory=lambda: project_root() / ".mlops" / "store")
    s3_endpoint_url: str | None = None
    model_repository: str = "s3://mpg-mlops/models/mpg"
    cache_dir: Path = Field(default_factory=lambda: project_root() / ".mlops" / "cache")
    #: git over https (the pipeline's clone and push, CI's branches): a token and the user name sent with it
    git_token: SecretStr | None = None
    git_username: str = "oauth2"  # GitLab accepts any user name with a token; "oauth2" is customary
    #: `mlops serve --source-uri`: the store URI a model directory was downloaded from (KServe's storageUri)
    model_source_uri: str | None = None
    #: `mlops monitor`: its database URL; the reporters whose feedback is trusted (name:token,...)
    monitor_db: str | None = None
    feedback_tokens: SecretStr | None = None
    #: `mlops pipeline submit`: the Kubeflow Pipelines API and its bearer token
    kfp_host: str | None = None
    kfp_token: SecretStr | None = None
    #: multi-user KFP: the profile namespace runs go to (CI's submit-training reads it from the CI variable)
    kfp_namespace: str | None = None
    #: show the traceback of an unexpected error (a bug report) instead of one line
    debug: bool = False
    #: where the local control plane's programs are built (infra/gobuild.py); default ~/.cache/mpg-mlops/controlplane
    controlplane_cache: Path | None = None

    @field_validator(
        "s3_endpoint_url", "git_token", "monitor_db", "feedback_tokens", "kfp_token", "kfp_namespace", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value):
        return value or None


#: Published models live at ``<repository>/<model id>/``.
DEFAULT_MODEL_REPOSITORY = Settings.model_fields["model_repository"].default
