"""The model store: immutable, content-addressed model URIs ``s3://<bucket>/models/mpg/<id>/``.

One interface, two backends. The embedded default maps ``s3://bucket/key`` to
``<store root>/bucket/key`` on local disk, so the same URI works on a laptop; with
``MLOPS_S3_ENDPOINT_URL`` set, any S3 server is used (credentials from the
standard AWS environment variables).

Publishing uploads to a staging location, verifies checksums, then finalizes, so an
interrupted publish leaves nothing at the final URI: locally the finalize is one
atomic rename; on S3 the card is copied last and a model counts as published only
when its card is there and the model file matches the card's id.
"""

from __future__ import annotations

import base64
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from core.errors import MlopsError
from core.model_card import CARD_FILE, MODEL_FILE, ModelCard, read_card, sha256_file, verify_model_dir
from core.settings import Settings

FILES = (MODEL_FILE, CARD_FILE)  # the card goes last: on S3 it marks the model complete
STAGING = ".staging"


class StoreError(MlopsError):
    """The store is unreachable, a URI is malformed, or an immutable URI would be overwritten."""


@dataclass(frozen=True)
class Published:
    uri: str
    model_id: str
    created: bool  # False: the same model was already there (no-op)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b/`` -> (``bucket``, ``a/b``)."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise StoreError(f"{uri!r} is not an s3://bucket/key URI")
    return parsed.netloc, parsed.path.strip("/")


def model_uri(repository: str, model_id: str) -> str:
    """The one URI a model with this id ever has."""
    split_s3_uri(repository)
    return f"{repository.rstrip('/')}/{model_id}/"


class Backend(Protocol):
    def read_card(self, bucket: str, key: str) -> ModelCard | None: ...
    def model_sha256(self, bucket: str, key: str) -> str: ...
    def upload_staged(self, model_dir: Path, bucket: str, key: str) -> None: ...
    def download(self, bucket: str, key: str, dest: Path) -> None: ...


class ModelStore:
    """Publish and fetch model directories by URI."""

    def __init__(self, backend: Backend, cache_dir: Path):
        self.backend = backend
        self.cache_dir = cache_dir

    def publish(self, model_dir: Path, repository: str) -> Published:
        """Publish ``model_dir`` under ``repository``; the same model twice is a no-op."""
        card = verify_model_dir(model_dir)
        uri = model_uri(repository, card.id)
        bucket, key = split_s3_uri(uri)
        if self._published(bucket, key, card.id):
            return Published(uri, card.id, created=False)
        self.backend.upload_staged(Path(model_dir), bucket, key)
        return Published(uri, card.id, created=True)

    def _published(self, bucket: str, key: str, model_id: str) -> bool:
        existing = self.backend.read_card(bucket, key)
        if existing is None:
            return False
        actual = self.backend.model_sha256(bucket, key)
        if existing.id != model_id or actual != model_id:
            raise StoreError(
                f"s3://{bucket}/{key}/ already holds different content (card {existing.id[:12]}…, "
                f"model file {actual[:12]}…); published URIs are immutable, refusing to overwrite"
            )
        return True

    def fetch(self, uri: str) -> Path:
        """A verified local model directory for ``uri`` (s3:// through the cache, or a local path)."""
        if not uri.startswith("s3://"):
            path = Path(urlparse(uri).path if uri.startswith("file://") else uri)
            verify_model_dir(path)
            return path
        bucket, key = split_s3_uri(uri)
        model_id = key.rsplit("/", 1)[-1]
        cached = self.cache_dir / model_id
        if cached.is_dir():
            try:
                verify_model_dir(cached)
                return cached
            except MlopsError:
                shutil.rmtree(cached)
        if self.backend.read_card(bucket, key) is None:
            raise StoreError(f"no model at {uri}: nothing was published there")
        staging = self.cache_dir / f".{model_id}.{uuid.uuid4().hex}"
        try:
            self.backend.download(bucket, key, staging)
            if verify_model_dir(staging).id != model_id:
                raise StoreError(f"{uri} holds a model whose card id does not match the URI")
            os.replace(staging, cached)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return cached


class LocalBackend:
    """``s3://bucket/key`` -> ``root/bucket/key``; finalize is an atomic directory rename."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, bucket: str, key: str) -> Path:
        return self.root / bucket / key

    def read_card(self, bucket: str, key: str) -> ModelCard | None:
        path = self._path(bucket, key)
        return read_card(path) if (path / CARD_FILE).is_file() else None

    def model_sha256(self, bucket: str, key: str) -> str:
        path = self._path(bucket, key) / MODEL_FILE
        return sha256_file(path) if path.is_file() else ""

    def upload_staged(self, model_dir: Path, bucket: str, key: str) -> None:
        final = self._path(bucket, key)
        staging = self.root / bucket / STAGING / uuid.uuid4().hex
        staging.mkdir(parents=True)
        try:
            for name in FILES:
                shutil.copyfile(model_dir / name, staging / name)
                if sha256_file(staging / name) != sha256_file(model_dir / name):
                    raise StoreError(f"checksum mismatch after copying {name} to {staging}")
            final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staging, final)  # atomic; fails if final appeared meanwhile
        except OSError as e:
            raise StoreError(f"cannot publish to {final}: {e}") from e
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def download(self, bucket: str, key: str, dest: Path) -> None:
        shutil.copytree(self._path(bucket, key), dest)


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

    def read_card(self, bucket: str, key: str) -> ModelCard | None:
        response = self._call("read", self.client.get_object, Bucket=bucket, Key=f"{key}/{CARD_FILE}")
        return None if response is None else ModelCard.model_validate_json(response["Body"].read())

    def model_sha256(self, bucket: str, key: str) -> str:
        response = self._call(
            "head", self.client.head_object, Bucket=bucket, Key=f"{key}/{MODEL_FILE}", ChecksumMode="ENABLED"
        )
        return base64.b64decode(response["ChecksumSHA256"]).hex() if response else ""

    def upload_staged(self, model_dir: Path, bucket: str, key: str) -> None:
        staging = f"{key.rsplit('/', 1)[0]}/{STAGING}/{uuid.uuid4().hex}"
        try:
            for name in FILES:
                digest = base64.b64encode(bytes.fromhex(sha256_file(model_dir / name))).decode()
                with open(model_dir / name, "rb") as body:
                    # S3 rejects the upload if the bytes it received do not hash to ChecksumSHA256.
                    self._call(
                        "upload",
                        self.client.put_object,
                        Bucket=bucket,
                        Key=f"{staging}/{name}",
                        Body=body,
                        ChecksumSHA256=digest,
                    )
            for name in FILES:
                self._call(
                    "finalize",
                    self.client.copy_object,
                    Bucket=bucket,
                    Key=f"{key}/{name}",
                    CopySource={"Bucket": bucket, "Key": f"{staging}/{name}"},
                    ChecksumAlgorithm="SHA256",
                )
        finally:
            for name in FILES:
                self._call("cleanup", self.client.delete_object, Bucket=bucket, Key=f"{staging}/{name}")

    def download(self, bucket: str, key: str, dest: Path) -> None:
        dest.mkdir(parents=True)
        for name in FILES:
            self._call(
                "download", self.client.download_file, Bucket=bucket, Key=f"{key}/{name}", Filename=str(dest / name)
            )


def open_store(settings: Settings) -> ModelStore:
    """The store the settings describe: S3 when an endpoint is configured, else the local folder."""
    backend = S3Backend(settings.s3_endpoint_url) if settings.s3_endpoint_url else LocalBackend(settings.store_root)
    return ModelStore(backend, settings.cache_dir)
