"""The overlay model file: one small file per environment whose only job is the model URI.

``k8s/overlays/<env>/model.yaml`` is a patch of the InferenceService's
``spec.predictor.model.storageUri`` and nothing else, so a bump edits one line of
one file and a promotion copies the file (its text names no environment). Reading
it needs no kustomize: anything that wants "the model production serves" (``mlops
serve --env``, ``mlops gate --champion production``, the pipeline's fetch step) reads
this file, at a git revision or in the working tree.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from core.errors import MlopsError
from core.uri import StoreURI, parse_store_uri

ENVIRONMENTS = ("staging", "production")
OVERLAYS = Path("k8s/overlays")
MODEL_FILE_NAME = "model.yaml"
_URI_LINE = re.compile(r"^(?P<indent>[ \t]+storageUri:[ \t]*)(?P<uri>\S+)[ \t]*$", re.MULTILINE)


class OverlayError(MlopsError):
    """An overlay's model file is missing or is not the one-field patch it must be."""


def model_file(env: str) -> Path:
    """``k8s/overlays/<env>/model.yaml``, relative to the project root."""
    if env not in ENVIRONMENTS:
        raise OverlayError(f"unknown environment {env!r}; expected one of {', '.join(ENVIRONMENTS)}")
    return OVERLAYS / env / MODEL_FILE_NAME


def model_uri_in(text: str, where: str = MODEL_FILE_NAME) -> StoreURI:
    """The store URI a model file holds; anything but the one-field patch is an ``OverlayError``."""
    try:
        patch = yaml.safe_load(text)
        uri = patch["spec"]["predictor"]["model"]["storageUri"]
        extra = patch["spec"] != {"predictor": {"model": {"storageUri": uri}}}
    except (yaml.YAMLError, KeyError, TypeError) as e:
        raise OverlayError(f"{where} is not a storageUri patch of the InferenceService") from e
    if extra or patch.get("kind") != "InferenceService" or len(_URI_LINE.findall(text)) != 1:
        raise OverlayError(f"{where} must hold the InferenceService's storageUri and nothing else")
    try:
        return parse_store_uri(uri)
    except MlopsError as e:
        raise OverlayError(f"{where}: {e}") from e


def with_model_uri(text: str, uri: StoreURI, where: str = MODEL_FILE_NAME) -> str:
    """``text`` with its storageUri replaced by ``uri``: the one line changes, comments stay."""
    model_uri_in(text, where)
    return _URI_LINE.sub(lambda m: f"{m['indent']}{uri}", text, count=1)


def read_model_uri(root: Path, env: str) -> StoreURI:
    """The model URI ``env`` serves, from the working tree under ``root``."""
    path = root / model_file(env)
    try:
        text = path.read_text()
    except FileNotFoundError as e:
        raise OverlayError(f"{path} not found") from e
    return model_uri_in(text, str(path))
