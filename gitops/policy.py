"""Manifest policy: the rules every rendered object must follow, beyond its schema.

Each rule yields ``Finding``s naming the tree, the object and the field. The rules:

- every container has CPU and memory requests and limits; runs as non-root with a
  read-only root filesystem, no privilege escalation, all capabilities dropped and
  the RuntimeDefault seccomp profile (container or pod level);
- images are pinned by digest (a tag can be pushed again);
- pods and ServiceAccounts do not mount a Kubernetes API token (none of ours calls
  the API: the nightly run uses a projected token for the KFP audience instead);
- RBAC rules name their verbs, resources and API groups (no ``*``);
- no Secret carries data (Secrets are created out of band, never from git);
- every InferenceService serves an immutable store URI (``core.uri``);
- every workload is selected by a NetworkPolicy that restricts both ingress and
  egress, and a namespace the tree creates has a default-deny policy;
- a bearer token never travels over plain http unless the pod is in the mesh;
- Argo CD: every Application belongs to an AppProject of the tree, points at one of
  its source repositories and destinations; projects allow no cluster-scoped kind
  but Namespace.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from core.errors import MlopsError
from core.uri import parse_store_uri

Obj = dict[str, Any]
WORKLOAD_PODS = {  # kind -> path to the pod spec
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "Pod": ("spec",),
}
MESH_ANNOTATION = "sidecar.istio.io/inject"
#: An image pinned by content: a tag (even a version or a commit) can be pushed again, and a node keeps the old.
PINNED = re.compile(r"[a-z0-9.-]+(:\d+)?(/[a-z0-9._-]+)+(:[\w.-]+)?@sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Finding:
    tree: str
    obj: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.tree}: {self.obj}: {self.field}: {self.message}"


class PolicyError(MlopsError):
    """Manifests break the schema or the policy; the message lists every finding."""


def name_of(obj: Obj) -> str:
    return f"{obj.get('kind', '?')}/{obj.get('metadata', {}).get('name', '?')}"


def _get(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def _pod_template(obj: Obj) -> tuple[str, Obj] | None:
    """(dotted path, pod spec) of a workload, or None."""
    path = WORKLOAD_PODS.get(obj.get("kind", ""))
    spec = _get(obj, path) if path else None
    return (".".join(path), spec) if isinstance(spec, dict) else None


def _pod_labels(obj: Obj) -> dict[str, str]:
    kind = obj.get("kind")
    if kind == "InferenceService":  # KServe labels the predictor pods it creates
        return {"serving.kserve.io/inferenceservice": obj["metadata"]["name"], "component": "predictor"}
    template = {"Pod": ("metadata",), "CronJob": ("spec", "jobTemplate", "spec", "template", "metadata")}.get(
        kind, ("spec", "template", "metadata")
    )
    return _get(obj, (*template, "labels")) or {}


def _containers(obj: Obj) -> Iterator[tuple[str, Obj]]:
    """(dotted path, container) for every container the object runs."""
    kind = obj.get("kind")
    if kind == "ServingRuntime":
        specs = [("spec", obj.get("spec", {}))]
    elif pod := _pod_template(obj):
        specs = [pod]
    else:
        return
    for prefix, spec in specs:
        for key in ("initContainers", "containers"):
            for container in spec.get(key) or []:
                yield f"{prefix}.{key}[{container.get('name', '?')}]", container


def _resources(where: str, resources: Any) -> Iterator[tuple[str, str]]:
    for section in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if not _get(resources, (section, resource)):
                yield f"{where}.resources.{section}.{resource}", "must be set (every container has requests and limits)"


def check_containers(obj: Obj, pod_security: Obj | None = None) -> Iterator[tuple[str, str]]:
    """Resources, security context and image of every container."""
    if pod_security is None:
        pod = _pod_template(obj)
        pod_security = (pod[1].get("securityContext") if pod else None) or {}
    for where, container in _containers(obj):
        yield from _resources(where, container.get("resources"))
        security = container.get("securityContext") or {}
        if not (security.get("runAsNonRoot") or pod_security.get("runAsNonRoot")):
            yield f"{where}.securityContext.runAsNonRoot", "must be true"
        if security.get("readOnlyRootFilesystem") is not True:
            yield f"{where}.securityContext.readOnlyRootFilesystem", "must be true"
        if security.get("allowPrivilegeEscalation") is not False:
            yield f"{where}.securityContext.allowPrivilegeEscalation", "must be false"
        if "ALL" not in (_get(security, ("capabilities", "drop")) or []):
            yield f"{where}.securityContext.capabilities.drop", "must include ALL"
        seccomp = _get(security, ("seccompProfile", "type")) or _get(pod_security, ("seccompProfile", "type"))
        if seccomp != "RuntimeDefault":
            yield f"{where}.securityContext.seccompProfile.type", "must be RuntimeDefault (container or pod)"
        image = str(container.get("image", ""))
        if not PINNED.fullmatch(image):
            yield f"{where}.image", f"{image!r} must be pinned by digest (name@sha256:<64 hex>): a tag can move"


def check_token_mount(obj: Obj) -> Iterator[tuple[str, str]]:
    kind = obj.get("kind")
    if kind == "ServiceAccount":
        if obj.get("automountServiceAccountToken") is not False:
            yield "automountServiceAccountToken", "must be false (no workload here calls the Kubernetes API)"
        return
    if kind == "InferenceService":
        where, spec = "spec.predictor", _get(obj, ("spec", "predictor")) or {}
    elif pod := _pod_template(obj):
        where, spec = pod
    else:
        return
    if spec.get("automountServiceAccountToken") is not False:
        yield f"{where}.automountServiceAccountToken", "must be false (no workload here calls the Kubernetes API)"


def check_inference_service(obj: Obj) -> Iterator[tuple[str, str]]:
    if obj.get("kind") != "InferenceService":
        return
    predictor = _get(obj, ("spec", "predictor")) or {}
    uri = _get(predictor, ("model", "storageUri"))
    try:
        parse_store_uri(str(uri))
    except MlopsError as e:
        yield "spec.predictor.model.storageUri", f"must be an immutable model URI: {e}"
    yield from _resources("spec.predictor.model", _get(predictor, ("model", "resources")))
    security = predictor.get("securityContext") or {}
    if not security.get("runAsNonRoot"):
        yield "spec.predictor.securityContext.runAsNonRoot", "must be true"
    if _get(security, ("seccompProfile", "type")) != "RuntimeDefault":
        yield "spec.predictor.securityContext.seccompProfile.type", "must be RuntimeDefault"


def check_rbac(obj: Obj) -> Iterator[tuple[str, str]]:
    if obj.get("kind") not in ("Role", "ClusterRole"):
        return
    for index, rule in enumerate(obj.get("rules") or []):
        for key in ("verbs", "resources", "apiGroups"):
            if "*" in (rule.get(key) or []):
                yield f"rules[{index}].{key}", "must not be a wildcard: name what is needed"


def check_secret(obj: Obj) -> Iterator[tuple[str, str]]:
    if obj.get("kind") == "Secret":
        for key in ("data", "stringData"):
            if obj.get(key):
                yield key, "a Secret with data must not be in git: create it out of band and reference it"


def check_plaintext_token(obj: Obj) -> Iterator[tuple[str, str]]:
    pod = _pod_template(obj)
    if not pod:
        return
    annotations = _get(obj, ("spec", "jobTemplate", "spec", "template", "metadata", "annotations")) or _get(
        obj, ("spec", "template", "metadata", "annotations")
    )
    in_mesh = (annotations or {}).get(MESH_ANNOTATION) == "true"
    for where, container in _containers(obj):
        args = " ".join(map(str, [*(container.get("command") or []), *(container.get("args") or [])]))
        if "http://" in args and "token" in args and not in_mesh:
            message = f"a bearer token over plain http: use https, or put the pod in the mesh ({MESH_ANNOTATION})"
            yield f"{where}.args", message


OBJECT_RULES: tuple[Callable[[Obj], Iterator[tuple[str, str]]], ...] = (
    check_containers,
    check_token_mount,
    check_inference_service,
    check_rbac,
    check_secret,
    check_plaintext_token,
)


def _selects(selector: Obj, labels: dict[str, str]) -> bool:
    wanted = selector.get("matchLabels") or {}
    return all(labels.get(key) == value for key, value in wanted.items()) and not selector.get("matchExpressions")


def check_network_policies(objects: list[Obj]) -> Iterator[tuple[Obj, str, str]]:
    """Every workload is fenced in both directions; a namespace the tree creates denies by default."""
    policies = [o for o in objects if o.get("kind") == "NetworkPolicy"]
    fencing = [p for p in policies if {"Ingress", "Egress"} <= set(_get(p, ("spec", "policyTypes")) or [])]
    for obj in objects:
        if obj.get("kind") == "Namespace":
            namespace = obj["metadata"]["name"]
            deny = [
                p
                for p in fencing
                if p["metadata"].get("namespace") == namespace
                and _get(p, ("spec", "podSelector")) in ({}, None)
                and not _get(p, ("spec", "ingress"))
                and not _get(p, ("spec", "egress"))
            ]
            if not deny:
                yield obj, "metadata.name", "the namespace has no default-deny NetworkPolicy (podSelector {}, no rules)"
        if obj.get("kind") in WORKLOAD_PODS or obj.get("kind") == "InferenceService":
            labels, namespace = _pod_labels(obj), obj.get("metadata", {}).get("namespace")
            allowed = [
                p
                for p in fencing
                if p["metadata"].get("namespace") == namespace
                and _get(p, ("spec", "podSelector", "matchLabels"))
                and _selects(p["spec"]["podSelector"], labels)
            ]
            if not allowed:
                yield obj, "pod labels", "no NetworkPolicy selects these pods for both Ingress and Egress"


def check_argocd(objects: list[Obj]) -> Iterator[tuple[Obj, str, str]]:
    projects = {o["metadata"]["name"]: o for o in objects if o.get("kind") == "AppProject"}
    for project in projects.values():
        for index, allowed in enumerate(_get(project, ("spec", "clusterResourceWhitelist")) or []):
            if (allowed.get("group"), allowed.get("kind")) != ("", "Namespace"):
                yield project, f"spec.clusterResourceWhitelist[{index}]", "only Namespace may be cluster-scoped"
    for app in (o for o in objects if o.get("kind") == "Application"):
        project = projects.get(_get(app, ("spec", "project")))
        if project is None:
            yield app, "spec.project", "names no AppProject of this tree"
            continue
        repo = _get(app, ("spec", "source", "repoURL"))
        if repo not in (_get(project, ("spec", "sourceRepos")) or []):
            yield app, "spec.source.repoURL", f"{repo!r} is not a source repository of {name_of(project)}"
        destination = _get(app, ("spec", "destination")) or {}
        targets = [(d.get("server"), d.get("namespace")) for d in _get(project, ("spec", "destinations")) or []]
        if (destination.get("server"), destination.get("namespace")) not in targets:
            where = f"{destination.get('server')} {destination.get('namespace')}"
            yield app, "spec.destination", f"{where} is not a destination of {name_of(project)}"


def findings(tree: str, objects: list[Obj]) -> list[Finding]:
    """Every policy finding for the rendered objects of one tree."""
    found = [
        Finding(tree, name_of(obj), field, message)
        for obj in objects
        for rule in OBJECT_RULES
        for field, message in rule(obj)
    ]
    for check in (check_network_policies, check_argocd):
        found += [Finding(tree, name_of(obj), field, message) for obj, field, message in check(objects)]
    return found
