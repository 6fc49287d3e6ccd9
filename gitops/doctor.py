"""``mlops cluster doctor``: is this cluster one the manifests work on? Each prerequisite docs/cluster.md
names, read from the cluster kubectl points at, with its version floor; a failure names the fix.

The floors, and why:

- Kubernetes >= 1.27 (kubectl's server-side field validation, ``--validate=strict``, and the Pod Security
  admission the namespaces rely on are GA/on by default from there);
- KServe: a release tested here (``infra/controlplane.toml``: tests/cluster/ runs each), its default deployment
  mode raw Deployments, its storage initializer hardened for Pod Security ``restricted``, and its predictor
  Services not headless (``service.serviceClusterIPNone``: the page dials the Service's port 80, a headless
  Service would send it to the pod's port 80, where nothing listens); the fix for the first two is
  ``k8s/platform/kserve.yaml``;
- Argo CD >= 3.3 (its InferenceService health check is right from there, argo-cd#25263; CronJob health from 3.2);
- Kubeflow Pipelines >= 2.5 (drivers before it reject fields the SDK's compiler adds, kubeflow/pipelines#11662);
- prometheus-operator's PodMonitor and PrometheusRule CRDs (Argo CD's ``SkipDryRunOnMissingResource`` only skips
  the dry run: the apply itself still fails without them, and the sync with it);
- kustomize >= 5.0 on the machine that renders (the overlays use ``replacements`` with named targets).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from infra.gobuild import short, versions
from infra.manifests import kubectl as kubectl_program

Kubectl = Callable[..., subprocess.CompletedProcess]

FLOORS = {"kubernetes": (1, 27), "argocd": (3, 3), "kfp": (2, 5), "kustomize": (5, 0)}
PLATFORM_FIX = (
    "kubectl apply --server-side --field-manager=mpg-mlops-platform --force-conflicts -f k8s/platform/kserve.yaml"
)


@dataclass(frozen=True)
class Finding:
    what: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.what}: {self.detail}"


def local_kubectl(context: str | None = None, kubeconfig: str | None = None) -> Kubectl:
    """kubectl on the cluster the user's kubeconfig (or ``context``) names."""

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        options = [
            *([f"--context={context}"] if context else []),
            *([f"--kubeconfig={kubeconfig}"] if kubeconfig else []),
        ]
        return subprocess.run(
            [kubectl_program(), *options, *args], capture_output=True, text=True, timeout=60, check=False
        )

    return run


def _version(text: str | None) -> tuple[int, ...] | None:
    match = re.search(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    return tuple(int(g) for g in match.groups() if g is not None) if match else None


def _get(kubectl: Kubectl, *args: str) -> dict | None:
    result = kubectl("get", *args, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def _image_tag(kubectl: Kubectl, namespace: str, name: str) -> str | None:
    deployment = _get(kubectl, "deployment", name, "-n", namespace)
    if deployment is None:
        return None
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    return image.rsplit(":", 1)[-1] if ":" in image.split("/")[-1] else image


def _floor(what: str, found: tuple[int, ...] | None, floor: tuple[int, int], where: str) -> Finding:
    if found is None:
        return Finding(what, False, f"not found ({where}): install it (docs/cluster.md, Prerequisites)")
    shown = ".".join(map(str, found))
    ok = found[:2] >= floor
    return Finding(what, ok, f"{shown}" + ("" if ok else f", older than {floor[0]}.{floor[1]}: upgrade it"))


def kserve_findings(kubectl: Kubectl) -> list[Finding]:
    config = _get(kubectl, "configmap", "inferenceservice-config", "-n", "kserve")
    if config is None:
        missing = "no ConfigMap kserve/inferenceservice-config: install KServe (docs/cluster.md)"
        return [Finding("KServe", False, missing)]
    data = config.get("data") or {}
    found = []
    image = json.loads(data.get("storageInitializer") or "{}").get("image", "")
    release = _version(image.rsplit(":", 1)[-1]) or _version(_image_tag(kubectl, "kserve", "kserve-controller-manager"))
    supported = {short(r) for r in versions().kserve}
    shown = ".".join(map(str, release)) if release else "unknown"
    found.append(
        Finding(
            "KServe release",
            release is not None and f"{release[0]}.{release[1]}" in supported,
            f"{shown}"
            + (
                ""
                if release and f"{release[0]}.{release[1]}" in supported
                else f", tested here: {', '.join(sorted(supported))}"
            ),
        )
    )
    try:
        mode = json.loads(data.get("deploy") or "{}").get("defaultDeploymentMode")
    except json.JSONDecodeError:
        mode = None
    found.append(
        Finding(
            "KServe default deployment mode",
            mode in ("RawDeployment", "Standard"),
            f"{mode}"
            + ("" if mode in ("RawDeployment", "Standard") else f": raw Deployments are needed, run {PLATFORM_FIX}"),
        )
    )
    service = json.loads(data.get("service") or "{}")
    headless = bool(service.get("serviceClusterIPNone"))
    found.append(
        Finding(
            "KServe predictor Services have a cluster IP",
            not headless,
            "serviceClusterIPNone is true: the page would dial pod port 80; set it false (inferenceservice-config)"
            if headless
            else "yes",
        )
    )
    containers = (_get(kubectl, "clusterstoragecontainers") or {}).get("items") or []
    s3 = [
        c
        for c in containers
        if any((f.get("prefix") or "").startswith("s3://") for f in c["spec"].get("supportedUriFormats") or [])
    ]
    context = (s3[0]["spec"]["container"].get("securityContext") or {}) if s3 else {}
    hardened = (
        context.get("allowPrivilegeEscalation") is False
        and "ALL" in ((context.get("capabilities") or {}).get("drop") or [])
        and bool(s3)
    )
    found.append(
        Finding(
            "KServe's storage initializer passes Pod Security restricted",
            hardened,
            "yes"
            if hardened
            else f"the ClusterStorageContainer for s3:// sets no hardened securityContext: run {PLATFORM_FIX}",
        )
    )
    return found


def findings(kubectl: Kubectl) -> list[Finding]:
    """Every prerequisite, in the bootstrap (docs/cluster.md) order."""
    server = kubectl("version", "-o", "json", check=False)
    if server.returncode != 0 or "serverVersion" not in server.stdout:
        return [Finding("cluster", False, f"kubectl cannot reach it: {server.stderr.strip()[:200]}")]
    answer = json.loads(server.stdout)
    found = [
        _floor("Kubernetes", _version(answer["serverVersion"]["gitVersion"]), FLOORS["kubernetes"], "the API server"),
        _floor("kustomize (this machine)", _version(answer.get("kustomizeVersion")), FLOORS["kustomize"], "kubectl"),
    ]
    found += kserve_findings(kubectl)
    found.append(
        _floor(
            "Argo CD",
            _version(_image_tag(kubectl, "argocd", "argocd-server")),
            FLOORS["argocd"],
            "Deployment argocd/argocd-server",
        )
    )
    found.append(
        _floor(
            "Kubeflow Pipelines",
            _version(_image_tag(kubectl, "kubeflow", "ml-pipeline")),
            FLOORS["kfp"],
            "Deployment kubeflow/ml-pipeline",
        )
    )
    for crd in ("podmonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com"):
        present = _get(kubectl, "crd", crd) is not None
        found.append(
            Finding(f"CRD {crd}", present, "yes" if present else "missing: install prometheus-operator's CRDs")
        )
    return found
