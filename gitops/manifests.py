"""Validate every Kustomize tree the cluster is built from: schemas, policy, and kubeconform when present.

The trees are the two serving overlays, the Kubeflow objects (``k8s/base/kfp``) and
the Argo CD objects (``k8s/argocd``). Each is rendered once; every object is checked
against its schema (``infra.manifests``, strict) and the policy (``gitops.policy``).
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from gitops.cluster import KFP_FLOWS, KFP_MULTI_USER_FLOWS, SERVING_FLOWS, reachability
from gitops.policy import Finding, findings, name_of
from infra.manifests import KSERVE_VERSIONS, ManifestError, object_problems, render
from infra.overlays import ENVIRONMENTS

SCHEMAS = Path("k8s/schemas")
FLOWS = {  # the network flows each tree's pods need
    **{f"overlays/{env}": SERVING_FLOWS for env in ENVIRONMENTS},
    "base/kfp": KFP_FLOWS,
    "overlays/kfp-multi-user": KFP_MULTI_USER_FLOWS,
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass"}
TREES = {
    **{f"overlays/{env}": Path("k8s/overlays") / env for env in ENVIRONMENTS},
    "base/kfp": Path("k8s/base/kfp"),
    "overlays/kfp-multi-user": Path("k8s/overlays/kfp-multi-user"),
    "argocd": Path("k8s/argocd"),
}


def render_tree(root: Path, name: str) -> list[dict]:
    if name not in TREES:
        raise ManifestError(f"unknown tree {name!r}; expected one of {', '.join(TREES)}")
    return render(root / TREES[name])


def render_all(root: Path, missing_ok: bool = False, trees: tuple[str, ...] = tuple(TREES)) -> dict[str, list[dict]]:
    """Every tree (or those named), rendered (kustomize runs in parallel: each call is a process).

    ``missing_ok``: a tree whose folder does not exist (at an old revision) renders as nothing.
    """
    names = [name for name in trees if not missing_ok or (root / TREES[name]).is_dir()]
    with ThreadPoolExecutor(max_workers=len(TREES)) as pool:
        rendered = dict(pool.map(lambda name: (name, render_tree(root, name)), names))
    return {name: rendered.get(name, []) for name in trees}


def schema_findings(tree: str, objects: list[dict], schema_dir: Path) -> list[Finding]:
    return [
        Finding(tree, name_of(obj), field, message)
        for obj in objects
        for field, message in object_problems(obj, schema_dir)
    ]


def kubeconform(rendered: dict[str, list[dict]], schema_dir: Path) -> list[Finding]:
    """``kubeconform -strict`` with the vendored schemas, when the binary is on PATH (CI has it)."""
    binary = shutil.which("kubeconform")
    if binary is None:
        return []
    found = []
    layout = "{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json"
    with tempfile.TemporaryDirectory() as tmp:
        for (tree, objects), version in itertools.product(rendered.items(), KSERVE_VERSIONS):
            path = Path(tmp) / (tree.replace("/", "-") + ".yaml")
            path.write_text(yaml.safe_dump_all(objects))
            locations = [f"{schema_dir}/kserve-{version}/{layout}", f"{schema_dir}/{layout}"]
            command = [binary, "-strict", "-summary", "-output", "text", str(path)]
            command[1:1] = [arg for location in ["default", *locations] for arg in ("-schema-location", location)]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                for line in (result.stdout + result.stderr).splitlines():
                    if " - " in line and ("is invalid" in line or "failed" in line or "error" in line.lower()):
                        found.append(Finding(tree, "kubeconform", "-", line.strip()))
                if not found:
                    found.append(Finding(tree, "kubeconform", "-", (result.stdout + result.stderr).strip()))
    return found


def validate_all(
    root: Path, trees: list[str] | None = None, repo_url: str | None = None
) -> tuple[dict[str, list[dict]], list[Finding]]:
    """Render and check the trees; returns what was rendered and every finding (empty: all clean).

    ``repo_url``: this project's repository, the only one Argo CD may sync from (None: not compared)."""
    rendered = render_all(root) if trees is None else {name: render_tree(root, name) for name in trees}
    schema_dir = root / SCHEMAS
    found = []
    for tree, objects in rendered.items():
        found += schema_findings(tree, objects, schema_dir)
        found += findings(tree, objects, repo_url)
        found += flow_findings(tree, objects)
    found += project_findings(rendered)
    found += kubeconform(rendered, schema_dir)
    return rendered, found


def flow_findings(tree: str, objects: list[dict]) -> list[Finding]:
    """Every flow the product needs, allowed by the NetworkPolicies over the pods KServe and the tree make
    (``gitops.cluster``); a connection nothing needs, allowed, is a finding too."""
    flows = FLOWS.get(tree)
    if flows is None:
        return []
    result = reachability(objects, flows, namespace_of(objects))
    found = [Finding(tree, "NetworkPolicy", flow.what, f"blocked: {flow.destination}") for flow in result.blocked]
    found += [
        Finding(tree, "NetworkPolicy", f"{source} -> {destination}:{port}/{protocol}", "allowed, but no flow needs it")
        for source, destination, port, protocol in result.unneeded
    ]
    return found


def namespace_of(objects: list[dict]) -> str:
    return next((o["metadata"]["namespace"] for o in objects if o["metadata"].get("namespace")), "")


def project_findings(rendered: dict[str, list[dict]]) -> list[Finding]:
    """Every kind an Application syncs is one its AppProject allows (else Argo CD refuses the sync)."""
    objects = rendered.get("argocd") or []
    projects = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "AppProject"}
    by_path = {str(path): name for name, path in TREES.items()}
    found = []
    for app in (o for o in objects if o["kind"] == "Application"):
        project, tree = projects.get(app["spec"]["project"], {}), by_path.get(app["spec"]["source"]["path"])
        if tree not in rendered:
            continue
        cluster = {(k["group"], k["kind"]) for k in project.get("clusterResourceWhitelist") or []}
        namespaced = {(k["group"], k["kind"]) for k in project.get("namespaceResourceWhitelist") or []}
        for obj in rendered[tree]:
            group = obj["apiVersion"].rpartition("/")[0]
            allowed = cluster if obj["kind"] in CLUSTER_SCOPED else namespaced
            if (group, obj["kind"]) not in allowed:
                where = f"AppProject/{app['spec']['project']}"
                found.append(Finding("argocd", where, "whitelist", f"{tree}'s {name_of(obj)} is not allowed"))
    return found


@dataclass(frozen=True)
class ModelStore:
    """An environment's model store, as its overlay's ``model-store.yaml`` names it."""

    url: str  # what clients dial: scheme://host:port
    namespace: str  # where its pods run, for the NetworkPolicies
    pod_port: int  # the port those pods listen on
    verify_ssl: bool

    @property
    def https(self) -> bool:
        return self.url.startswith("https://")

    @property
    def host_port(self) -> str:
        parsed = urlsplit(self.url)
        return f"{parsed.hostname}:{parsed.port or (443 if self.https else 80)}"


def model_store(root: Path, env: str) -> ModelStore:
    """The model store ``env``'s rendered overlay names (the ConfigMap ``mpg-model-store``)."""
    found = [o for o in render_tree(root, f"overlays/{env}") if name_of(o) == "ConfigMap/mpg-model-store"]
    if not found:
        raise ManifestError(f"k8s/overlays/{env} has no ConfigMap mpg-model-store (model-store.yaml)")
    data = found[0].get("data") or {}
    try:
        url, namespace, port = data["MLOPS_S3_ENDPOINT_URL"], data["namespace"], int(data["podPort"])
        store = ModelStore(url, namespace, port, data["verifySSL"] == "1")
    except (KeyError, ValueError) as e:
        raise ManifestError(f"k8s/overlays/{env}/model-store.yaml: {e!r} is missing or not a number") from e
    parsed = urlsplit(store.url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.path not in ("", "/"):
        raise ManifestError(f"k8s/overlays/{env}/model-store.yaml: {store.url!r} is not scheme://host[:port]")
    return store


def store_secret(store: ModelStore, namespace: str, access_key: str, secret_key: str) -> dict:
    """The Secret ``mpg-s3-credentials`` for ``namespace``: the credentials, and the annotations KServe's storage
    initializer reads the endpoint from (kserve pkg/credentials/s3/s3_secret.go). KServe defaults to https, so
    ``s3-usehttps`` and ``s3-verifyssl`` are always set, from the store's scheme."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "mpg-s3-credentials",
            "namespace": namespace,
            "annotations": {
                "serving.kserve.io/s3-endpoint": store.host_port,
                "serving.kserve.io/s3-usehttps": "1" if store.https else "0",
                "serving.kserve.io/s3-verifyssl": "1" if store.https and store.verify_ssl else "0",
            },
        },
        "type": "Opaque",
        "stringData": {"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key},
    }
