"""Manifest policy: the rules every rendered object must follow, beyond its schema.

Each rule yields ``Finding``s naming the tree, the object and the field. The rules:

- every container has CPU and memory requests and limits; runs as non-root with a
  read-only root filesystem, no privilege escalation, all capabilities dropped and
  the RuntimeDefault seccomp profile (container or pod level); InferenceService and
  ServingRuntime containers too (KServe merges the InferenceService's model container
  over its runtime's, so the runtime carries the hardening and the model container
  may add nothing dangerous);
- no container is privileged, adds a capability or takes a host port; no pod shares the
  host's network, PID or IPC namespace or mounts a host path;
- images are pinned by digest (a tag can be pushed again) and come from the project's
  repositories (``ALLOWED_IMAGES``);
- Services are ClusterIP (the page is reached through the Ingress, which has TLS for
  every host);
- pods and ServiceAccounts do not mount a Kubernetes API token (none of ours calls
  the API: the nightly run uses a projected token for the KFP audience instead);
- RBAC rules name their verbs, resources and API groups (no ``*``); no tree makes a
  ClusterRole or ClusterRoleBinding (cluster-wide rights are the cluster admins'), and no
  binding grants cluster-admin, admin or edit;
- no NetworkPolicy admits traffic from everywhere (a rule without ``from``, an empty
  peer, every namespace, or 0.0.0.0/0);
- no Secret carries data (Secrets are created out of band, never from git);
- every InferenceService serves an immutable store URI (``core.uri``);
- every workload is selected by a NetworkPolicy that restricts both ingress and
  egress, and a namespace the tree creates has a default-deny policy;
- a bearer token never travels over plain http unless the pod is in the mesh;
- Argo CD: every Application belongs to an AppProject of the tree, points at one of
  its source repositories and destinations; projects allow no cluster-scoped kind
  but Namespace and no wildcard (source repositories, destinations, kinds); with the
  project's own repository URL given (CI gives it), every Application and AppProject
  names that repository, not a fork.

checkov (``mlops manifests scan``) runs the generic checks of a scanner beside these.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from core.errors import MlopsError
from core.uri import parse_store_uri
from infra.image import NAME as PROJECT_IMAGE
from infra.image import SERVING_NAME as SERVING_IMAGE

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
#: The image repositories the cluster may pull from: the project's own two (infra/image.py: the platform image and
#: the predictor's serving-only one) and the page's nginx.
ALLOWED_IMAGES = (PROJECT_IMAGE, SERVING_IMAGE, "docker.io/nginxinc/nginx-unprivileged")
#: Built-in ClusterRoles too broad to grant to anything this repository runs.
BROAD_ROLES = {"cluster-admin", "admin", "edit"}
POD_HOST_FIELDS = ("hostNetwork", "hostPID", "hostIPC")


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


def _pod_specs(obj: Obj) -> list[tuple[str, Obj]]:
    """(dotted path, pod spec) of everything the object runs pods from: a workload's template, a
    ServingRuntime's spec, an InferenceService's components (each an inline pod spec)."""
    kind = obj.get("kind")
    if kind == "ServingRuntime":
        return [("spec", obj.get("spec") or {})]
    if kind == "InferenceService":
        spec = obj.get("spec") or {}
        return [
            (f"spec.{c}", spec[c]) for c in ("predictor", "transformer", "explainer") if isinstance(spec.get(c), dict)
        ]
    pod = _pod_template(obj)
    return [pod] if pod else []


def _containers(obj: Obj) -> Iterator[tuple[str, Obj]]:
    """(dotted path, container) for every container the object runs, an InferenceService's model container
    (``spec.predictor.model``) excepted: see ``_model_containers``."""
    for prefix, spec in _pod_specs(obj):
        for key in ("initContainers", "containers"):
            for container in spec.get(key) or []:
                yield f"{prefix}.{key}[{container.get('name', '?')}]", container


def _model_containers(obj: Obj) -> Iterator[tuple[str, Obj]]:
    """An InferenceService's model containers: KServe merges each over its ServingRuntime's container."""
    if obj.get("kind") == "InferenceService":
        for prefix, spec in _pod_specs(obj):
            if isinstance(spec.get("model"), dict):
                yield f"{prefix}.model", spec["model"]


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
    for where, container in [*_containers(obj), *_model_containers(obj)]:
        yield from _dangers(where, container)


def _dangers(where: str, container: Obj) -> Iterator[tuple[str, str]]:
    """What no container may do, whatever else merges into it."""
    security = container.get("securityContext") or {}
    if security.get("privileged"):
        yield f"{where}.securityContext.privileged", "must not be true (a privileged container owns its node)"
    if added := _get(security, ("capabilities", "add")):
        yield f"{where}.securityContext.capabilities.add", f"adds {', '.join(map(str, added))}: add none"
    if security.get("allowPrivilegeEscalation") is True or security.get("runAsUser") == 0:
        yield f"{where}.securityContext", "must not run as root or allow privilege escalation"
    for port in container.get("ports") or []:
        if port.get("hostPort"):
            yield f"{where}.ports.hostPort", f"{port['hostPort']}: a host port exposes the node; use a Service"
    image = container.get("image")
    if image is not None and str(image).split("@")[0].rsplit(":", 1)[0] not in ALLOWED_IMAGES:
        allowed = ", ".join(ALLOWED_IMAGES)
        yield f"{where}.image", f"{image!r} is not from an allowed repository ({allowed}; gitops/policy.py)"


def check_host_access(obj: Obj) -> Iterator[tuple[str, str]]:
    """No pod shares the node's namespaces or files."""
    for prefix, spec in _pod_specs(obj):
        for field in POD_HOST_FIELDS:
            if spec.get(field):
                yield f"{prefix}.{field}", "must not be true (the pod would share the node's)"
        for volume in spec.get("volumes") or []:
            if "hostPath" in volume:
                yield f"{prefix}.volumes[{volume.get('name', '?')}].hostPath", "a host path mounts the node's files"


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
        parsed = parse_store_uri(str(uri))
    except MlopsError as e:
        yield "spec.predictor.model.storageUri", f"must be an immutable model URI: {e}"
    else:
        from infra.settings import Settings

        ours = Settings().model_repository.rstrip("/")
        if str(parsed.repository) != ours:  # the default store is a shared bucket: anyone's pickle could be there
            yield "spec.predictor.model.storageUri", f"must be a model of this project's repository {ours}/"
    for where, container in _model_containers(obj):
        for key in ("command", "args"):
            if key in container:  # the runtime's command is the reviewed one; a model may not replace it
                yield f"{where}.{key}", "must not be set: the ServingRuntime says how the model server starts"
    yield from _resources("spec.predictor.model", _get(predictor, ("model", "resources")))
    security = predictor.get("securityContext") or {}
    if not security.get("runAsNonRoot"):
        yield "spec.predictor.securityContext.runAsNonRoot", "must be true"
    if _get(security, ("seccompProfile", "type")) != "RuntimeDefault":
        yield "spec.predictor.securityContext.seccompProfile.type", "must be RuntimeDefault"


def check_rbac(obj: Obj) -> Iterator[tuple[str, str]]:
    kind = obj.get("kind")
    if kind in ("ClusterRole", "ClusterRoleBinding"):
        yield "kind", f"no {kind} in this repository: cluster-wide rights are the cluster admins' (use a Role)"
    if kind in ("RoleBinding", "ClusterRoleBinding") and _get(obj, ("roleRef", "name")) in BROAD_ROLES:
        yield "roleRef.name", f"{obj['roleRef']['name']!r} grants far more than any workload here needs"
    if kind not in ("Role", "ClusterRole"):
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


def check_exposure(obj: Obj) -> Iterator[tuple[str, str]]:
    """Nothing is reachable from outside but through the Ingress, over TLS; no fence admits everyone."""
    kind = obj.get("kind")
    if kind == "Service" and _get(obj, ("spec", "type")) in ("LoadBalancer", "NodePort"):
        yield "spec.type", f"{obj['spec']['type']} exposes the pods outside the cluster: use ClusterIP and the Ingress"
    if kind == "Service" and _get(obj, ("spec", "type")) == "ExternalName":
        yield "spec.type", "ExternalName sends this name's traffic to a host outside the fence: use ClusterIP"
    if kind == "Service" and _get(obj, ("spec", "externalIPs")):
        yield "spec.externalIPs", "must not be set: the pods are reached through the Ingress only"
    if kind == "Ingress":
        covered = {host for entry in _get(obj, ("spec", "tls")) or [] for host in entry.get("hosts") or []}
        for index, rule in enumerate(_get(obj, ("spec", "rules")) or []):
            if rule.get("host") not in covered:
                yield f"spec.rules[{index}].host", f"{rule.get('host')!r} is served without TLS (spec.tls)"
    if kind == "NetworkPolicy":
        for index, rule in enumerate(_get(obj, ("spec", "ingress")) or []):
            peers = rule.get("from")
            if not peers or any(_everyone(peer) for peer in peers):
                yield f"spec.ingress[{index}].from", "admits traffic from everywhere: name the pods and namespaces"


def _everyone(peer: Obj) -> bool:
    if not peer:
        return True
    if "ipBlock" in peer:
        return _get(peer, ("ipBlock", "cidr")) in ("0.0.0.0/0", "::/0")
    return peer.get("namespaceSelector") == {} and not _get(peer, ("podSelector", "matchLabels"))


OBJECT_RULES: tuple[Callable[[Obj], Iterator[tuple[str, str]]], ...] = (
    check_containers,
    check_host_access,
    check_exposure,
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


def normal_repo_url(url: str) -> str:
    """A git URL as two spellings of one repository compare equal: scheme-less ssh form, credentials,
    ``.git``, a trailing slash and case set aside."""
    url = str(url).strip()
    if match := re.fullmatch(r"[\w.-]+@([\w.-]+):(.+)", url):  # git@host:group/project.git
        url = f"{match[1]}/{match[2]}"
    url = re.sub(r"^[a-z+]+://", "", url)
    url = re.sub(r"^[^@/]*@", "", url)  # user:token@
    return url.rstrip("/").removesuffix(".git").lower()


def check_argocd(objects: list[Obj], repo_url: str | None = None) -> Iterator[tuple[Obj, str, str]]:
    projects = {o["metadata"]["name"]: o for o in objects if o.get("kind") == "AppProject"}
    for project in projects.values():
        for index, allowed in enumerate(_get(project, ("spec", "clusterResourceWhitelist")) or []):
            if (allowed.get("group"), allowed.get("kind")) != ("", "Namespace"):
                yield project, f"spec.clusterResourceWhitelist[{index}]", "only Namespace may be cluster-scoped"
        spec = project.get("spec") or {}
        wildcards = [
            *(f"sourceRepos[{i}]" for i, repo in enumerate(spec.get("sourceRepos") or []) if "*" in str(repo)),
            *(
                f"destinations[{i}]"
                for i, d in enumerate(spec.get("destinations") or [])
                if "*" in str(d.get("server", "")) + str(d.get("namespace", "")) + str(d.get("name", ""))
            ),
            *(
                f"namespaceResourceWhitelist[{i}]"
                for i, k in enumerate(spec.get("namespaceResourceWhitelist") or [])
                if "*" in str(k.get("group", "")) + str(k.get("kind", ""))
            ),
        ]
        wildcards += [f"sourceNamespaces[{i}]" for i, n in enumerate(spec.get("sourceNamespaces") or []) if "*" in n]
        wildcards += [
            f"roles[{i}].policies[{j}]"
            for i, role in enumerate(spec.get("roles") or [])
            for j, policy in enumerate(role.get("policies") or [])
            if "*" in str(policy)
        ]
        for where in wildcards:
            yield project, f"spec.{where}", "must not be a wildcard: name the repository, destination or kind"
        if repo_url is not None:
            for index, repo in enumerate(spec.get("sourceRepos") or []):
                if normal_repo_url(repo) != normal_repo_url(repo_url):
                    yield project, f"spec.sourceRepos[{index}]", f"{repo!r} is not this project's repository"
    for app in (o for o in objects if o.get("kind") == "Application"):
        project = projects.get(_get(app, ("spec", "project")))
        if project is None:
            yield app, "spec.project", "names no AppProject of this tree"
            continue
        sources = [("spec.source", _get(app, ("spec", "source")))] if _get(app, ("spec", "source")) else []
        sources += [(f"spec.sources[{i}]", s) for i, s in enumerate(_get(app, ("spec", "sources")) or [])]
        for where, source in sources or [("spec.source", {})]:
            repo = (source or {}).get("repoURL")
            if repo not in (_get(project, ("spec", "sourceRepos")) or []):
                yield app, f"{where}.repoURL", f"{repo!r} is not a source repository of {name_of(project)}"
            elif repo_url is not None and normal_repo_url(repo) != normal_repo_url(repo_url):
                yield app, f"{where}.repoURL", f"{repo!r} is not this project's repository {repo_url!r} (a fork?)"
        destination = _get(app, ("spec", "destination")) or {}
        targets = [(d.get("server"), d.get("namespace")) for d in _get(project, ("spec", "destinations")) or []]
        if (destination.get("server"), destination.get("namespace")) not in targets:
            where = f"{destination.get('server')} {destination.get('namespace')}"
            yield app, "spec.destination", f"{where} is not a destination of {name_of(project)}"


def findings(tree: str, objects: list[Obj], repo_url: str | None = None) -> list[Finding]:
    """Every policy finding for the rendered objects of one tree (``repo_url``: this project's repository,
    which Argo CD must sync from; None: not compared)."""
    found = [
        Finding(tree, name_of(obj), field, message)
        for obj in objects
        for rule in OBJECT_RULES
        for field, message in rule(obj)
    ]
    for check in (check_network_policies, lambda objs: check_argocd(objs, repo_url)):
        found += [Finding(tree, name_of(obj), field, message) for obj, field, message in check(objects)]
    return found
