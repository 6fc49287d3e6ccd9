#!/usr/bin/env python3
"""Vendor the InferenceService and ServingRuntime JSON schemas of KServe releases, from their Python SDK.

    .venv/bin/python scripts/vendor-kserve-schemas.py 0.15.2 0.16.0

KServe publishes its CRDs with each release on GitHub, which this build machine cannot
reach; its Python SDK on PyPI carries the same types (``kserve/models/*.py``, generated
by openapi-generator from the OpenAPI description of the Go types the CRDs are made
from). For each version this downloads the SDK wheel (no install, no code run), reads
each model class's ``openapi_types``, ``attribute_map`` and required fields from its
source, resolves the Kubernetes types it embeds (``V1Container``, ...) from the
``kubernetes`` client in this environment, and writes kubeconform's layout:

    k8s/schemas/kserve-<major.minor>/serving.kserve.io/inferenceservice_v1beta1.json
    k8s/schemas/kserve-<major.minor>/serving.kserve.io/servingruntime_v1alpha1.json

What the SDK cannot say is not in the schemas: enum values and annotation values (the
deployment mode, for one) are checked by tests/gitops/test_controllers.py against
KServe's source instead.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KINDS = {
    "inferenceservice_v1beta1.json": ("V1beta1InferenceService", "serving.kserve.io/v1beta1", "InferenceService"),
    "servingruntime_v1alpha1.json": ("V1alpha1ServingRuntime", "serving.kserve.io/v1alpha1", "ServingRuntime"),
}
REQUIRED = re.compile(r"Invalid value for `(\w+)`, must not be `None`")
#: Quantities: Kubernetes takes a number or a string there ("1", 1, "500m").
QUANTITY_FIELDS = {("V1ResourceRequirements", "limits"), ("V1ResourceRequirements", "requests")}


def sdk_classes(wheel: Path) -> dict[str, tuple[dict, dict, set]]:
    """class name -> (openapi_types, attribute_map, required python names), read from the wheel's sources."""
    classes = {}
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if not re.fullmatch(r"kserve/models/v1\w+\.py", name):
                continue
            source = archive.read(name).decode()
            for node in ast.parse(source).body:
                if isinstance(node, ast.ClassDef):
                    values = {
                        target.id: ast.literal_eval(item.value)
                        for item in node.body
                        if isinstance(item, ast.Assign)
                        for target in item.targets
                        if isinstance(target, ast.Name) and target.id in ("openapi_types", "attribute_map")
                    }
                    if "openapi_types" in values:
                        classes[node.name] = (
                            values["openapi_types"],
                            values["attribute_map"],
                            set(REQUIRED.findall(source)),
                        )
    return classes


def kubernetes_class(name: str) -> tuple[dict, dict, set]:
    import inspect

    import kubernetes.client.models as models

    cls = getattr(models, name)
    return cls.openapi_types, cls.attribute_map, set(REQUIRED.findall(inspect.getsource(cls)))


class Builder:
    def __init__(self, classes: dict):
        self.classes, self.definitions = classes, {}

    def type_schema(self, text: str, owner: str = "", field: str = "") -> dict:
        if (owner, field) in QUANTITY_FIELDS:
            return {"type": "object", "additionalProperties": {"type": ["string", "number"]}}
        if text.startswith("list["):
            return {"type": "array", "items": self.type_schema(text[5:-1])}
        if text.startswith("dict("):
            return {"type": "object", "additionalProperties": self.type_schema(text[5:-1].split(",", 1)[1].strip())}
        simple = {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "datetime": "string"}
        if text in simple:
            return {"type": simple[text]}
        if text == "object":
            return {}  # int-or-string, raw JSON
        if text == "ResourceQuantity":
            return {"type": ["string", "number"]}
        if text in ("V1Time", "KnativeVolatileTime"):
            return {"type": "string"}
        if text.startswith(("Knative", "GithubCom")):
            return {}  # status types and KEDA's triggers: not Kubernetes' own, not checked field by field
        if re.fullmatch(r"V1(alpha|beta)\d\w+", text) and text not in self.classes:
            print(f"  {text}: named by the SDK but not in it; left open", file=sys.stderr)
            return {}
        if vendored := re.fullmatch(r"K8sIoApi[A-Z][a-z]+(V\d\w*?)([A-Z]\w*)", text):
            text = vendored[1] + vendored[2]  # K8sIoApiAppsV1DeploymentStrategy -> V1DeploymentStrategy
        return self.reference(text)

    def reference(self, name: str) -> dict:
        if name not in self.definitions:
            self.definitions[name] = {}  # a placeholder first: the types may refer to themselves
            types, names, required = self.classes[name] if name in self.classes else kubernetes_class(name)
            properties = {names[p]: self.type_schema(t, name, p) for p, t in sorted(types.items())}
            schema = {"type": "object", "properties": properties}
            if required:
                schema["required"] = sorted(names[p] for p in required)
            self.definitions[name] = schema
        return {"$ref": f"#/definitions/{name}"}

    def document(self, root: str, api_version: str, kind: str) -> dict:
        self.reference(root)
        top = dict(self.definitions[root])
        top["properties"] = {
            **top["properties"],
            "apiVersion": {"type": "string", "enum": [api_version]},
            "kind": {"type": "string", "enum": [kind]},
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        }
        return {"$schema": "http://json-schema.org/draft-07/schema#", **top, "definitions": self.definitions}


def vendor(version: str) -> list[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", f"kserve=={version}", "-d", tmp],
            check=True,
            stderr=subprocess.DEVNULL,
        )
        (wheel,) = Path(tmp).glob("kserve-*.whl")
        classes = sdk_classes(wheel)
    folder = ROOT / "k8s" / "schemas" / f"kserve-{'.'.join(version.split('.')[:2])}" / "serving.kserve.io"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, (root, api_version, kind) in KINDS.items():
        schema = Builder(classes).document(root, api_version, kind)
        schema["description"] = (
            f"{kind} of KServe {version}, from the kserve {version} SDK (scripts/vendor-kserve-schemas.py)"
        )
        (folder / filename).write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
        written.append(folder / filename)
    return written


if __name__ == "__main__":
    for version in sys.argv[1:] or ["0.15.2", "0.16.0"]:
        for path in vendor(version):
            print(path.relative_to(ROOT))
