"""Every use of DVC beyond its documented API, in one place: checked against dvc 3.67.1, dvc-data 3.18.3 and
dvc-objects 5.2.0 (``CHECKED``; tests/unit/test_library_internals.py fails loudly when the installed versions
differ, and exercises each function against a real repository).

- ``cache_and_push``: an object into the local cache (``repo.cache.local.add``) and onto a remote
  (``repo.cloud.push`` with a ``HashInfo``), without ``dvc add`` (which would rewrite the .dvc file first);
- ``cached_path`` / ``remote_object_path``: where an object lives in the cache, in a folder remote
  (``oid_to_path``, ``get_remote_odb``);
- ``read_pin`` / ``with_pin``: the md5 and size a ``.dvc`` file pins, read and replaced in its YAML.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from core.errors import MlopsError

CHECKED = {"dvc": "3.67.1", "dvc-data": "3.18.3", "dvc-objects": "5.2.0"}


class DvcAdapterError(MlopsError):
    """DVC refused, or a .dvc file is not what DVC writes."""


@dataclass(frozen=True)
class Pin:
    """What a ``.dvc`` file pins: the object's md5 and the file's size."""

    md5: str
    size: int


def _repo(root: Path):
    from dvc.repo import Repo

    return Repo(str(root))


def read_pin(text: str, where: str) -> Pin:
    """The pin of a ``.dvc`` file's text (its one output)."""
    try:
        outs = (yaml.safe_load(text) or {}).get("outs") or []
        return Pin(str(outs[0]["md5"]), int(outs[0]["size"]))
    except (yaml.YAMLError, AttributeError, IndexError, KeyError, TypeError, ValueError) as e:
        raise DvcAdapterError(f"{where} holds no md5 and size: is it a DVC file?") from e


def with_pin(text: str, pin: Pin, where: str) -> str:
    """``text`` pinning ``pin`` instead, every other line as it was (comments, order, fields DVC keeps)."""
    old = read_pin(text, where)
    result = text.replace(f"md5: {old.md5}", f"md5: {pin.md5}", 1).replace(f"size: {old.size}", f"size: {pin.size}", 1)
    if read_pin(result, where) != pin:
        raise DvcAdapterError(f"{where}: cannot replace its md5 and size in place")
    return result


def cache_and_push(root: Path, path: Path, md5: str, remote: str | None) -> None:
    """``path`` (whose md5 is ``md5``) into the repository's cache and onto ``remote`` (None: the default)."""
    from dvc.exceptions import DvcException
    from dvc_data.hashfile.hash_info import HashInfo
    from dvc_objects.fs.local import LocalFileSystem

    try:
        with _repo(root) as repo:
            repo.cache.local.add(str(path), LocalFileSystem(), md5)
            result = repo.cloud.push([HashInfo("md5", md5)], remote=remote)
    except DvcException as e:
        raise DvcAdapterError(f"pushing to {remote or 'the default remote'} failed: {e}") from e
    if result.failed:
        raise DvcAdapterError(f"the DVC remote {remote or '(default)'} refused the object; nothing changed")


def cached_path(root: Path, md5: str) -> Path:
    """Where the object ``md5`` is in the repository's local cache."""
    with _repo(root) as repo:
        return Path(repo.cache.local.oid_to_path(md5))


def remote_object_path(root: Path, md5: str, remote: str | None) -> Path | None:
    """Where the object ``md5`` is in ``remote`` when that remote is a local folder (None otherwise)."""
    with _repo(root) as repo:
        odb = repo.cloud.get_remote_odb(remote, "push")
        if odb.fs.protocol not in ("local", "file"):
            return None
        return Path(odb.oid_to_path(md5)).resolve()
