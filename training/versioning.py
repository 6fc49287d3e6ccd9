"""Data versions through DVC: pull and push the tracked data files."""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.errors import MlopsError
from infra.gitauth import credentials_env, scrub


def data_targets(params) -> tuple[str, ...]:
    """The ``.dvc`` files of the data and of the trusted holdout, as ``params.yaml`` names them."""
    return tuple(f"{path}.dvc" for path in (params.data.path, params.data.trusted_holdout))


def pull_targets(params) -> tuple[str, ...]:
    """What ``mlops data pull`` fetches: the data, and the experimental pipeline's committed outputs
    (models/candidate), so that ``dvc repro`` on a fresh clone reruns nothing and rewrites nothing git tracks."""
    return (*data_targets(params), "dvc.yaml")


class DataVersionError(MlopsError):
    """DVC could not fetch or store a data version."""


@contextmanager
def _environment(values: dict[str, str]):
    """``values`` in the process environment for the duration (DVC and botocore read it), then as before."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def store_endpoint() -> dict[str, str]:
    """The model store's endpoint for DVC's s3 remote too: one setting (MLOPS_S3_ENDPOINT_URL, the overlay's
    model-store.yaml in the cluster), passed as botocore's AWS_ENDPOINT_URL_S3 unless that is set."""
    from infra.settings import Settings

    url = Settings().s3_endpoint_url
    return {"AWS_ENDPOINT_URL_S3": url} if url and "AWS_ENDPOINT_URL_S3" not in os.environ else {}


def _run(root: Path, action: str, remote: str | None, targets: tuple[str, ...]):
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with _environment(store_endpoint()), Repo(str(root)) as repo:
            return getattr(repo, action)(targets=[str(root / t) for t in targets], remote=remote)
    except DvcException as e:
        where = f"remote {remote!r}" if remote else "the default remote"
        raise DataVersionError(f"dvc {action} from {where} failed: {e}") from e


@dataclass(frozen=True)
class Pulled:
    downloaded: int  # files fetched from the remote into the cache
    restored: list[str]  # workspace files written (added or modified) from the cache

    def summary(self) -> str:
        if not self.restored:
            return "data up to date (nothing to fetch or restore)"
        files = ", ".join(self.restored)
        return f"restored {files} ({self.downloaded} file(s) downloaded, the rest from the local cache)"


def pull(root: Path, targets: tuple[str, ...], remote: str | None = None) -> Pulled:
    """Fetch the files pinned by the ``.dvc`` files and ``dvc.lock`` into the workspace (those that exist)."""
    result = _run(root, "pull", remote, _existing(root, targets))
    base = Path(root).resolve()
    restored = [(Path.cwd() / p).resolve().relative_to(base).as_posix() for p in result["added"] + result["modified"]]
    return Pulled(int(result["stats"]["fetched"]), sorted(restored))


def _existing(root: Path, targets: tuple[str, ...]) -> tuple[str, ...]:
    """The targets this checkout has (an older revision has no trusted holdout yet)."""
    return tuple(t for t in targets if (Path(root) / t).exists())


def read_versioned(path: str, repo: str, revision: str, remote: str | None = None) -> bytes:
    """A tracked file (git or DVC) of ``repo`` at ``revision``, fetched from the DVC remote if needed.

    Credentials for a private repository come from ``MLOPS_GIT_TOKEN`` through
    ``GIT_ASKPASS`` (``infra.gitauth``), never through the URL.
    """
    import dvc.api
    from dvc.exceptions import DvcException
    from dvc.scm import RevError

    where = scrub(f"{repo or 'the working copy'} at revision {revision!r}")
    try:
        with _environment({**credentials_env(), **store_endpoint()}):
            return dvc.api.read(path, repo=repo or None, rev=revision, remote=remote, mode="rb")
    except RevError as e:
        raise DataVersionError(f"revision {revision!r} not found in {scrub(repo or 'the working copy')}") from e
    except (DvcException, OSError) as e:
        raise DataVersionError(f"cannot read {path} from {where}: {scrub(str(e))}") from e
