"""The model store: immutable, content-addressed model URIs ``s3://<bucket>/<prefix>/<id>/``.

One interface, two backends. The embedded default maps ``s3://bucket/key`` to
``<store root>/bucket/key`` on local disk, so the same URI works on a laptop; with
``MLOPS_S3_ENDPOINT_URL`` set, any S3 server is used (credentials from the
standard AWS environment variables).

Publishing uploads to a scratch location, verifies checksums, then finalizes, so an
interrupted publish leaves nothing at the final URI: locally the finalize is one
atomic rename; on S3 the card is copied last and a model counts as published only
when its card is there and the model file matches the card's id. Scratch left by a
killed publish is removed by the next one. Fetched models are cached under
``<cache>/<model id>/`` and checked against the id in their URI before every use.
"""

from __future__ import annotations

import base64
import errno
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from core.atomic import replace_dir
from core.errors import MlopsError, ModelDirError
from core.model_card import MODEL_FILE, MODEL_FILES, ModelCard, read_card, sha256_file, verify_model_dir
from core.uri import LocalModelDir, ModelRef, Repository, StoreURI, parse_model_uri, parse_repository
from infra.scratch import scratch_dir
from infra.settings import Settings

SCRATCH = ".scratch"  # where a publish or a download is assembled before its rename
#: S3 has no locks: scratch objects older than this were left by a publish that died.
S3_STALE_AFTER = timedelta(hours=1)


class StoreError(MlopsError):
    """The store is unreachable, a URI names nothing, or an immutable URI would be overwritten."""


@dataclass(frozen=True)
class Published:
    uri: str
    model_id: str
    created: bool  # False: the same model was already there (no-op)


class Backend(Protocol):
    def read_card(self, uri: StoreURI) -> ModelCard | None: ...
    def model_sha256(self, uri: StoreURI) -> str: ...
    def upload(self, model_dir: Path, uri: StoreURI) -> bool: ...
    def download(self, uri: StoreURI, dest: Path) -> None: ...


class ModelStore:
    """Publish and fetch model directories by URI."""

    def __init__(self, backend: Backend, cache_dir: Path):
        self.backend = backend
        self.cache_dir = Path(cache_dir)

    @property
    def hint(self) -> str:
        """How to get a model into this store, for messages about one that is missing."""
        if isinstance(self.backend, LocalBackend):
            return (
                f" (local store {self.backend.root}: `mlops data pull` restores the models the overlays name, "
                "`mlops pipeline run` or `mlops publish` puts new ones there; set MLOPS_S3_ENDPOINT_URL for S3)"
            )
        return f" (S3 store at {self.backend.endpoint_url})"

    def publish(self, model_dir: Path, repository: str | Repository) -> Published:
        """Publish ``model_dir`` under ``repository``; the same model twice (or at once) is a no-op."""
        repo = parse_repository(repository) if isinstance(repository, str) else repository
        card = verify_model_dir(model_dir)
        uri = repo.model(card.id)
        if self._published(uri):
            return Published(str(uri), card.id, created=False)
        created = self.backend.upload(Path(model_dir), uri)
        if not created and not self._published(uri):  # lost a race to a publish that did not finish
            raise StoreError(f"publishing to {uri} collided with another publish; retry")
        return Published(str(uri), card.id, created=created)

    def card(self, uri: StoreURI) -> ModelCard:
        """The card of a published model, once its model file is checked against the id (nothing downloaded)."""
        if not self._published(uri):
            raise StoreError(f"no model at {uri}: nothing was published there{self.hint}")
        return self.backend.read_card(uri)

    def _published(self, uri: StoreURI) -> bool:
        existing = self.backend.read_card(uri)
        if existing is None:
            return False
        actual = self.backend.model_sha256(uri)
        if existing.id != uri.model_id or actual != uri.model_id:
            raise StoreError(
                f"{uri} already holds different content (card {existing.id[:12]}…, model file {actual[:12]}…); "
                "published URIs are immutable, refusing to overwrite"
            )
        return True

    def resolve(self, text: str | ModelRef) -> tuple[Path, str | None]:
        """A local model directory for a model URI, and the model id the URI demands (None for a path).

        The directory is verified here; ``load_model(path, expected_id)`` verifies the
        bytes again as it unpickles them.
        """
        ref = parse_model_uri(text) if isinstance(text, str) else text
        if isinstance(ref, LocalModelDir):
            verify_model_dir(ref.path)
            return ref.path, None
        return self.fetch(ref), ref.model_id

    def fetch(self, uri: StoreURI) -> Path:
        """``<cache>/<model id>/``, downloaded unless a verified copy is there already."""
        cached = self.cache_dir / uri.model_id
        if cached.is_dir() and not cached.is_symlink():
            try:
                verify_model_dir(cached, uri.model_id)
                return cached
            except ModelDirError:
                pass  # damaged or tampered with: replaced below by a fresh, verified copy
        if self.backend.read_card(uri) is None:
            raise StoreError(f"no model at {uri}: nothing was published there{self.hint}")
        with scratch_dir(self.cache_dir / SCRATCH) as scratch:
            fresh = scratch / "model"
            self.backend.download(uri, fresh)
            try:
                verify_model_dir(fresh, uri.model_id)
            except ModelDirError as e:
                raise StoreError(f"{uri} holds a model that does not match its id: {e}") from e
            _install(fresh, cached, uri.model_id)
        return cached


def _install(fresh: Path, cached: Path, model_id: str) -> None:
    """Move a verified download to its cache entry; what was there (if anything) ends up in ``fresh``."""
    try:
        if os.path.lexists(cached):
            replace_dir(fresh, cached)
        else:
            os.rename(fresh, cached)
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise StoreError(f"cannot write the model cache {cached}: {e.strerror}") from e
        verify_model_dir(cached, model_id)  # a concurrent fetch put the same model there first


class LocalBackend:
    """``s3://bucket/key`` -> ``root/bucket/key``; finalize is an atomic directory rename."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, uri: StoreURI) -> Path:
        return self.root / uri.bucket / uri.key

    def read_card(self, uri: StoreURI) -> ModelCard | None:
        path = self._path(uri)
        return read_card(path) if path.is_dir() else None

    def model_sha256(self, uri: StoreURI) -> str:
        path = self._path(uri) / MODEL_FILE
        return sha256_file(path) if path.is_file() else ""

    def upload(self, model_dir: Path, uri: StoreURI) -> bool:
        final = self._path(uri)
        try:
            with scratch_dir(self.root / uri.bucket / SCRATCH) as scratch:
                for name in MODEL_FILES:
                    shutil.copyfile(model_dir / name, scratch / name)
                    if sha256_file(scratch / name) != sha256_file(model_dir / name):
                        raise StoreError(f"checksum mismatch after copying {name} to {scratch}")
                final.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.rename(scratch, final)  # atomic; fails if final appeared meanwhile
                except OSError as e:
                    if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                        return False  # a concurrent publish of the same id finished first
                    raise
        except OSError as e:
            raise StoreError(f"cannot publish to {final}: {e.strerror or e}") from e
        return True

    def download(self, uri: StoreURI, dest: Path) -> None:
        dest.mkdir()
        for name in MODEL_FILES:
            shutil.copyfile(self._path(uri) / name, dest / name)


class S3Backend:
    """Any S3 server through boto3; uploads are checked against their SHA-256 checksums."""

    def __init__(self, endpoint_url: str):
        import boto3
        from botocore.config import Config

        self.endpoint_url = endpoint_url
        self.client = boto3.client("s3", endpoint_url=endpoint_url, config=Config(retries={"max_attempts": 3}))

    def _call(self, what: str, function, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return function(**kwargs)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise StoreError(f"S3 {what} failed at {self.endpoint_url}: {e}") from e
        except BotoCoreError as e:
            raise StoreError(f"S3 {what} failed at {self.endpoint_url}: {e}") from e

    def read_card(self, uri: StoreURI) -> ModelCard | None:
        response = self._call("read", self.client.get_object, Bucket=uri.bucket, Key=f"{uri.key}/model.json")
        if response is None:
            return None
        try:
            return ModelCard.model_validate_json(response["Body"].read())
        except ValueError as e:
            raise StoreError(f"{uri} has an unreadable model card: {e}") from e

    def model_sha256(self, uri: StoreURI) -> str:
        response = self._call(
            "head", self.client.head_object, Bucket=uri.bucket, Key=f"{uri.key}/{MODEL_FILE}", ChecksumMode="ENABLED"
        )
        return base64.b64decode(response["ChecksumSHA256"]).hex() if response else ""

    def _clean_stale_scratch(self, bucket: str, area: str) -> None:
        listed = self._call("list", self.client.list_objects_v2, Bucket=bucket, Prefix=f"{area}/") or {}
        cutoff = datetime.now(UTC) - S3_STALE_AFTER
        for item in listed.get("Contents", []):
            if item["LastModified"] < cutoff:
                self._call("cleanup", self.client.delete_object, Bucket=bucket, Key=item["Key"])

    def upload(self, model_dir: Path, uri: StoreURI) -> bool:
        area = f"{uri.prefix}/{SCRATCH}"
        self._clean_stale_scratch(uri.bucket, area)
        scratch = f"{area}/{uuid.uuid4().hex}"
        try:
            for name in MODEL_FILES:
                digest = base64.b64encode(bytes.fromhex(sha256_file(model_dir / name))).decode()
                with open(model_dir / name, "rb") as body:
                    # S3 rejects the upload if the bytes it received do not hash to ChecksumSHA256.
                    self._call(
                        "upload",
                        self.client.put_object,
                        Bucket=uri.bucket,
                        Key=f"{scratch}/{name}",
                        Body=body,
                        ChecksumSHA256=digest,
                    )
            for name in MODEL_FILES:  # the card last: it marks the model complete
                self._call(
                    "finalize",
                    self.client.copy_object,
                    Bucket=uri.bucket,
                    Key=f"{uri.key}/{name}",
                    CopySource={"Bucket": uri.bucket, "Key": f"{scratch}/{name}"},
                    ChecksumAlgorithm="SHA256",
                )
        finally:
            for name in MODEL_FILES:
                self._call("cleanup", self.client.delete_object, Bucket=uri.bucket, Key=f"{scratch}/{name}")
        return True

    def download(self, uri: StoreURI, dest: Path) -> None:
        dest.mkdir()
        for name in MODEL_FILES:
            self._call(
                "download",
                self.client.download_file,
                Bucket=uri.bucket,
                Key=f"{uri.key}/{name}",
                Filename=str(dest / name),
            )


def open_store(settings: Settings) -> ModelStore:
    """The store the settings describe: S3 when an endpoint is configured, else the local folder."""
    backend = S3Backend(settings.s3_endpoint_url) if settings.s3_endpoint_url else LocalBackend(settings.store_root)
    return ModelStore(backend, settings.cache_dir)
