"""Model URIs: the one parser every command, the pipeline and the predictor use.

Two forms are accepted, nothing else:

- a store URI, exactly ``s3://<bucket>/<prefix>/<64-hex model id>/`` (immutable and
  content addressed: the id is the sha256 of ``model.joblib``);
- a local model directory, given as a plain filesystem path (no scheme).

Every other string (``http://``, ``gs://``, ``file:``, a store URI without its id, with
``..`` or empty segments, query strings, ...) is refused with one line naming the two
accepted forms. Names built from a parsed URI therefore never leave the folder they
are joined to: a bucket or a prefix segment cannot be ``.`` or ``..``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from core.errors import MlopsError

ACCEPTED = "s3://<bucket>/<prefix>/<64-hex model id>/ or the path of a local model directory"
MODEL_ID = re.compile(r"[0-9a-f]{64}")
_BUCKET = r"[a-z0-9](?:[a-z0-9-]|\.(?!\.)){1,61}[a-z0-9]"  # S3 bucket naming rules, no ".."
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9._-]*"  # never "." or ".."; not hidden (a publish is assembled in ".scratch")
_REPOSITORY = re.compile(rf"s3://(?P<bucket>{_BUCKET})/(?P<prefix>{_SEGMENT}(?:/{_SEGMENT})*)/?")
_STORE_URI = re.compile(rf"s3://(?P<bucket>{_BUCKET})/(?P<prefix>{_SEGMENT}(?:/{_SEGMENT})*?)/(?P<id>[0-9a-f]{{64}})/")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


class ModelURIError(MlopsError):
    """A string is neither a store URI nor a local model directory path."""


@dataclass(frozen=True)
class Repository:
    """Where published models live: ``s3://<bucket>/<prefix>``."""

    bucket: str
    prefix: str

    def model(self, model_id: str) -> StoreURI:
        """The one URI a model with this id ever has in this repository."""
        if not MODEL_ID.fullmatch(model_id):
            raise ModelURIError(f"{model_id!r} is not a model id (64 lowercase hex digits)")
        return StoreURI(self.bucket, self.prefix, model_id)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass(frozen=True)
class StoreURI:
    """``s3://<bucket>/<prefix>/<model id>/``: one immutable, content-addressed model."""

    bucket: str
    prefix: str
    model_id: str

    @property
    def key(self) -> str:
        """The object-key prefix of the model's files (no trailing slash)."""
        return f"{self.prefix}/{self.model_id}"

    @property
    def repository(self) -> Repository:
        return Repository(self.bucket, self.prefix)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}/"


@dataclass(frozen=True)
class LocalModelDir:
    """A model directory on this machine, named by an explicit path."""

    path: Path

    def __str__(self) -> str:
        return str(self.path)


ModelRef = StoreURI | LocalModelDir


def parse_store_uri(text: str) -> StoreURI:
    """A store URI, or ``ModelURIError`` naming the accepted form."""
    match = _STORE_URI.fullmatch(text or "")
    if match is None:
        raise ModelURIError(f"{text!r} is not a store URI; expected s3://<bucket>/<prefix>/<64-hex model id>/")
    return StoreURI(match["bucket"], match["prefix"], match["id"])


def parse_model_uri(text: str) -> ModelRef:
    """A store URI or a local model directory path; anything else is refused in one line."""
    if not text or not text.strip():
        raise ModelURIError(f"an empty model URI; expected {ACCEPTED}")
    if _SCHEME.match(text):
        if _STORE_URI.fullmatch(text):
            return parse_store_uri(text)
        raise ModelURIError(f"{text!r} is not a model URI; expected {ACCEPTED}")
    return LocalModelDir(Path(text))


def parse_repository(text: str) -> Repository:
    """``s3://<bucket>/<prefix>`` (a trailing slash is allowed), where models are published."""
    match = _REPOSITORY.fullmatch(text or "")
    if match is None or MODEL_ID.fullmatch(match["prefix"].rsplit("/", 1)[-1]):
        raise ModelURIError(
            f"{text!r} is not a model repository; expected s3://<bucket>/<prefix>, e.g. s3://mpg-mlops/models/mpg"
        )
    return Repository(match["bucket"], match["prefix"])
