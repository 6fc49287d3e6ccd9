"""Data versions through DVC: pull and push the tracked data files."""

from __future__ import annotations

from pathlib import Path

from core.errors import MlopsError

DATA_TARGETS = ("data/auto-mpg.csv.dvc",)


class DataVersionError(MlopsError):
    """DVC could not fetch or store a data version."""


def _run(root: Path, action: str, remote: str | None, targets: tuple[str, ...]) -> int:
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            result = getattr(repo, action)(targets=[str(root / t) for t in targets], remote=remote)
    except DvcException as e:
        where = f"remote {remote!r}" if remote else "the default remote"
        raise DataVersionError(f"dvc {action} from {where} failed: {e}") from e
    # pull returns a stats dict, push a count of transferred files
    return int(result["stats"]["fetched"]) if isinstance(result, dict) else int(result)


def pull(root: Path, remote: str | None = None, targets: tuple[str, ...] = DATA_TARGETS) -> int:
    """Fetch the data files pinned by the ``.dvc`` files into the workspace; returns files fetched."""
    return _run(root, "pull", remote, targets)


def push(root: Path, remote: str | None = None, targets: tuple[str, ...] = DATA_TARGETS) -> int:
    """Upload the workspace's tracked data to a remote; returns files uploaded."""
    return _run(root, "push", remote, targets)
