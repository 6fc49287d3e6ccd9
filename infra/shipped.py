"""Shipped models: the models the overlays name travel with the repository, the way the data does.

Training is not bitwise reproducible across CPUs (OpenBLAS picks its kernels per CPU),
so a model id named in ``k8s/overlays/*/model.yaml`` cannot be re-made on another
machine. Instead its two files are committed under ``data/models/``, laid out as the
local store lays out a URI (``<bucket>/<prefix>/<id>/``), and ``mlops data pull``
publishes them into the local store (verifying each id), so a fresh clone serves,
gates against, reports on and rolls back to what the overlays name, offline.

``mlops gitops bump|promote|rollback`` keep the folder equal to the set of models the
overlays name, in the same commit as the overlay edit; earlier models stay in git
history, where a rollback finds them again.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from core.atomic import within
from core.errors import MlopsError
from core.model_card import MODEL_FILES, verify_model_dir
from core.uri import MODEL_ID, ModelURIError, StoreURI, parse_store_uri
from infra.overlays import ENVIRONMENTS, model_file, model_uri_in

SHIPPED = Path("data/models")


class ShippedModelError(MlopsError):
    """A shipped model is missing, damaged, or the folder holds something it should not."""


def shipped_path(uri: StoreURI) -> Path:
    """``data/models/<bucket>/<prefix>/<id>``, relative to the project root."""
    return SHIPPED / uri.bucket / uri.key


def overlay_uris(tree: Path) -> set[StoreURI]:
    """The model URIs the overlays under ``tree`` name."""
    return {model_uri_in((tree / model_file(env)).read_text(), str(model_file(env))) for env in ENVIRONMENTS}


def shipped_uris(tree: Path) -> dict[StoreURI, Path]:
    """Every model directory under ``tree/data/models`` with the URI its place names."""
    found = {}
    for card in sorted((tree / SHIPPED).glob("**/model.json")):
        folder = card.parent
        try:
            uri = parse_store_uri(f"s3://{folder.relative_to(tree / SHIPPED).as_posix()}/")
        except ModelURIError as e:
            raise ShippedModelError(f"{folder} is not at a model URI's place in {SHIPPED}: {e}") from e
        found[uri] = folder
    return found


def verified(folder: Path, uri: StoreURI) -> Path:
    """``folder`` once its files hash to ``uri``'s id (and nothing else is in it)."""
    extra = sorted(p.name for p in folder.iterdir() if p.name not in MODEL_FILES)
    if extra:
        raise ShippedModelError(f"{folder} holds {', '.join(extra)} besides the model files")
    try:
        verify_model_dir(folder, uri.model_id)
    except MlopsError as e:
        raise ShippedModelError(f"shipped model {folder} does not match {uri}: {e}") from e
    return folder


def ship(tree: Path, uri: StoreURI, model_dir: Path) -> list[Path]:
    """Copy a verified model directory to its place under ``tree``; the paths written (none if there)."""
    target = within(tree, shipped_path(uri))
    if target.is_dir():
        verified(target, uri)
        return []
    verified(model_dir, uri)
    target.mkdir(parents=True)
    for name in MODEL_FILES:
        shutil.copyfile(model_dir / name, target / name)
    return [shipped_path(uri) / name for name in MODEL_FILES]


def prune(tree: Path, keep: set[StoreURI]) -> list[Path]:
    """Remove shipped models not in ``keep`` (each still in git history); the paths removed.

    Only what ``ship`` makes is removed: a folder named by a model id holding nothing but
    the model files; anything else there is an error, not a deletion.
    """
    removed = []
    for uri, folder in shipped_uris(tree).items():
        if uri in keep:
            continue
        if not MODEL_ID.fullmatch(folder.name):
            raise ShippedModelError(f"{folder} is not a shipped model folder; leaving it alone")
        verified(folder, uri)
        for name in MODEL_FILES:
            (folder / name).unlink()
            removed.append(shipped_path(uri) / name)
        folder.rmdir()
        for parent in folder.parents:  # the now empty <bucket>/<prefix> folders that ship made
            if parent == tree / SHIPPED or any(parent.iterdir()):
                break
            parent.rmdir()
    return removed


@dataclass(frozen=True)
class Restored:
    uri: StoreURI
    created: bool  # False: the store held it already


def restore(tree: Path, store) -> list[Restored]:
    """Publish every shipped model into ``store`` (a ``infra.store.ModelStore``), each checked against its id."""
    restored = []
    for uri, folder in shipped_uris(tree).items():
        published = store.publish(verified(folder, uri), uri.repository)
        restored.append(Restored(uri, published.created))
    return restored
