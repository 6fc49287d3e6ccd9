"""The cluster half, checked by the real control plane: the trees applied as Argo CD applies them to etcd,
kube-apiserver, kube-controller-manager and KServe's own manager and webhooks (``infra.controlplane``), then
what those controllers made of them read back and judged.

One ``LocalCluster`` per supported KServe release. Its bootstrap is the README's: KServe's release install,
then this project's platform configuration over it (``k8s/platform/kserve.yaml``), the namespaces the platform
owns (Kubeflow's, Argo CD's), the Secrets made by hand. Then each tree is synced wave by wave
(``gitops.argocd``) and every verdict below is computed from the objects the controllers created:

- admitted: every Pod of every workload (predictor, client, monitor, the report and submitter Jobs) passed the
  admission chain (KServe's pod webhook, Pod Security ``restricted``, quota): no ``FailedCreate``;
- created: KServe's Deployment, Service and HPA, and what its pod webhook injected (agent, storage
  initializer), with the ports, selectors and labels the NetworkPolicies and the page rely on;
- endpoints: every Service selects ready Pods;
- healthy: every object Argo CD judges is Healthy (its own health scripts);
- transitions: bump, promote, rollback and delete of the InferenceService, each accepted by KServe's webhooks,
  the Deployment then naming the new model;
- a new model whose Pods never become ready does not read Healthy in ``mlops gitops status``'s judgement;
- flows: the NetworkPolicies over the real Pods and Services, judged by network-config-analyzer.

What cannot run here is named where it stands in: the kubelet (``infra.controlplane.Kubelet``), an ingress
controller (``_ingress_controller``), a CNI (policies are judged, not enforced), Argo CD's sync engine.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gitops import argocd
from gitops.manifests import model_store, render_tree, store_secret
from gitops.rollout import environment_health
from infra.controlplane import (
    ApplyRefusedError,
    ControlPlane,
    ControlPlaneError,
    KServe,
    Kubelet,
    PodFate,
    install_crds,
    other_crds,
    remove_workdir,
    wait_until,
    workdir,
)
from infra.gobuild import ensure_built, short

Obj = dict[str, Any]
Progress = Callable[[str], None]

PLATFORM = Path("k8s/platform/kserve.yaml")
SERVING = {"staging": "mpg-staging", "production": "mpg-production"}
#: every tree, in the order the README's bootstrap brings them (argocd last: it only holds Argo CD's objects)
TREES = ("overlays/staging", "overlays/production", "base/kfp", "overlays/kfp-multi-user", "argocd")
#: namespaces that exist before any tree of ours: Kubeflow's (standalone; a profile's in multi-user), Argo CD's,
#: the ingress controller's, KServe's own. Labelled as strictly as ours (Pod Security "restricted" enforced),
#: so that a workload of ours placed there is judged as in ours.
PLATFORM_NAMESPACES = ("kubeflow", "kubeflow-user-example-com", "argocd", "ingress-nginx", "monitoring")
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/warn": "restricted",
}


@dataclass
class Verdict:
    check: str
    ok: bool
    detail: str = ""

    def __str__(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.check}" + (f": {self.detail}" if self.detail else "")


class SyncError(ControlPlaneError):
    """A wave did not turn Healthy, or an object of it was refused."""


@dataclass
class LocalCluster:
    """A control plane with one KServe release on it, bootstrapped as the README says."""

    root: Path
    release: str
    progress: Progress = field(default=lambda line: print(line, file=sys.stderr, flush=True))
    platform: bool = True
    plane: ControlPlane | None = None
    kserve: KServe | None = None
    kubelet: Kubelet | None = None
    failing_models: set[str] = field(default_factory=set)
    job_exit_codes: dict[str, int] = field(default_factory=dict)
    _trees: dict[str, list[Obj]] = field(default_factory=dict)

    # --- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> LocalCluster:
        binaries = ensure_built((self.release,), self.progress)
        started = time.monotonic()
        self.plane = ControlPlane(binaries, workdir()).start()
        self.progress(f"  KServe {short(self.release)}: etcd, kube-apiserver, kube-controller-manager up")
        install_crds(self.plane, other_crds())
        platform = self.platform_documents() if self.platform else None
        self.kserve = KServe(self.plane, self.release).install(platform)
        self.kubelet = Kubelet(self.plane, self._fate).start()
        self.progress(f"  KServe {short(self.release)}: manager and webhooks up ({time.monotonic() - started:.0f} s)")
        return self

    def stop(self, keep: bool = False) -> None:
        if self.kubelet is not None:
            self.kubelet.stop()
        if self.plane is not None and not keep:
            self.plane.stop()
            remove_workdir(self.plane.workdir)

    def platform_documents(self) -> list[Obj]:
        return [d for d in yaml.safe_load_all((self.root / PLATFORM).read_text()) if d]

    def _fate(self, pod: Obj) -> PodFate:
        """The kubelet stand-in's answer: a Job's Pod exits with the code set for its Job's prefix (0 unless
        told), a predictor Pod of a model in ``failing_models`` restarts for ever, every other Pod is ready."""
        owners = pod["metadata"].get("ownerReferences") or [{}]
        if owners[0].get("kind") == "Job":
            job = owners[0]["name"]
            return PodFate(exit_code=next((c for p, c in self.job_exit_codes.items() if job.startswith(p)), 0))
        source = (pod["metadata"].get("annotations") or {}).get(
            "internal.serving.kserve.io/storage-initializer-sourceuri"
        )
        return PodFate(ready=source not in self.failing_models)

    # --- the README's bootstrap -----------------------------------------------------------------------------

    def tree(self, name: str) -> list[Obj]:
        if name not in self._trees:
            self._trees[name] = render_tree(self.root, name)
        return copy.deepcopy(self._trees[name])

    def bootstrap(self) -> None:
        """Namespaces the platform owns, then ours (step 2), then the Secrets made by hand (step 3)."""
        plane = self.plane
        namespaces = [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": RESTRICTED}}
            for name in PLATFORM_NAMESPACES
        ]
        plane.apply(namespaces, manager="platform")
        for env in SERVING:
            plane.apply([o for o in self.tree(f"overlays/{env}") if o["kind"] == "Namespace"], manager="bootstrap")
        secrets = []
        for env, namespace in SERVING.items():
            store = model_store(self.root, env)
            secrets.append(store_secret(store, namespace, "local-access-key", "local-secret-key"))
            secrets.append(_secret("mpg-monitor-db", namespace, {"url": "postgresql+psycopg://mpg:pw@db/mpg"}))
            secrets.append(_secret("mpg-client-tls", namespace, {"tls.crt": "x", "tls.key": "x"}))
        for namespace in ("kubeflow", "kubeflow-user-example-com"):
            secrets.append(store_secret(model_store(self.root, "production"), namespace, "local-key", "local-secret"))
            secrets.append(_secret("mpg-git-token", namespace, {"token": "local-token"}))
        plane.apply(secrets, manager="bootstrap")

    # --- Argo CD's sync, standing in -------------------------------------------------------------------------

    def sync(self, objects: list[Obj], timeout: float = 90, wait: bool = True) -> list[str]:
        """Apply ``objects`` as Argo CD would: wave by wave, server-side, the next wave only once this one is
        Healthy; returns the API server's warnings. A refusal or a wave that stays unhealthy raises SyncError."""
        warnings = []
        for number, objs in argocd.sync_order(objects):
            try:
                warnings += self.plane.apply(objs)
            except ApplyRefusedError as e:
                raise SyncError(f"wave {number} refused: {e}") from e
            for obj in objs:
                if obj["kind"] == "Ingress":
                    self._ingress_controller(obj)
            if wait:
                self.wait_healthy(objs, timeout, f"wave {number}")
        return warnings

    def wait_healthy(self, objects: list[Obj], timeout: float, what: str) -> None:
        def unhealthy() -> list[str]:
            found = []
            for obj in objects:
                live = self.live(obj)
                verdict = argocd.health(live)
                if verdict is not None and verdict.status != argocd.HEALTHY:
                    found.append(f"{obj['kind']}/{obj['metadata']['name']} {verdict}")
            return found

        try:
            wait_until(lambda: not unhealthy(), timeout, what, interval=0.5)
        except ControlPlaneError as e:
            raise SyncError(f"{what} not Healthy within {timeout:g} s: {'; '.join(unhealthy())}") from e

    def live(self, obj: Obj) -> Obj | None:
        meta = obj["metadata"]
        return self.plane.get(_resource(obj), meta["name"], meta.get("namespace"))

    def _ingress_controller(self, ingress: Obj) -> None:
        """Stands in for an ingress controller (none runs here): it gives the Ingress an address, which is all
        Argo CD's health waits for (gitops-engine health_ingress.go)."""
        meta = ingress["metadata"]
        self.plane.patch_status(
            "ingress", meta["name"], meta["namespace"], {"loadBalancer": {"ingress": [{"ip": "10.0.0.200"}]}}
        )

    # --- reading back ---------------------------------------------------------------------------------------

    def created(self, namespace: str, isvc: str = "mpg") -> dict[str, Obj | None]:
        """What KServe made of the InferenceService ``isvc``: its Deployment, Service, HPA and one Pod."""
        component = f"{isvc}-predictor"
        pods = self.plane.items("pods", namespace, f"serving.kserve.io/inferenceservice={isvc}")
        return {
            "InferenceService": self.plane.get("inferenceservice", isvc, namespace),
            "Deployment": self.plane.get("deployment", component, namespace),
            "Service": self.plane.get("service", component, namespace),
            "HorizontalPodAutoscaler": self.plane.get("horizontalpodautoscaler", component, namespace),
            "Pod": pods[0] if pods else None,
        }

    def failed_creates(self, namespace: str) -> list[str]:
        return sorted(
            {
                f"{e['involvedObject']['kind']}/{e['involvedObject']['name']}: {e['message']}"
                for e in self.plane.events(namespace, "FailedCreate")
            }
        )

    def run_cronjobs(self, namespace: str) -> list[Obj]:
        """One Job from each CronJob of ``namespace`` (as its schedule would make), its Pod run by the kubelet
        stand-in; returns the Jobs once each is finished."""
        jobs = []
        for cronjob in self.plane.items("cronjobs", namespace):
            name = f"{cronjob['metadata']['name'][:40]}-check-{int(time.time())}"
            self.plane.kubectl("create", "job", name, f"--from=cronjob/{cronjob['metadata']['name']}", "-n", namespace)
            jobs.append(name)

        def finished(name: str) -> Obj | None:
            job = self.plane.get("job", name, namespace)
            done = {c["type"] for c in (job or {}).get("status", {}).get("conditions") or [] if c["status"] == "True"}
            return job if done & {"Complete", "Failed"} else None

        return [wait_until(lambda n=name: finished(n), 60, f"Job {namespace}/{name} finishes") for name in jobs]


def _secret(name: str, namespace: str, data: dict[str, str]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": data,
    }


def _resource(obj: Obj) -> str:
    """kubectl's name for ``obj``'s kind, qualified by its group (``inferenceservices.serving.kserve.io``)."""
    group = obj["apiVersion"].rpartition("/")[0]
    plural = {"Ingress": "ingresses", "NetworkPolicy": "networkpolicies", "PodDisruptionBudget": "poddisruptionbudgets"}
    name = plural.get(obj["kind"], obj["kind"].lower() + "s")
    return f"{name}.{group}" if group else name


# --- verdicts ---------------------------------------------------------------------------------------------------


def admitted(cluster: LocalCluster, namespace: str) -> Verdict:
    """Every Pod the namespace's workloads asked for was admitted (webhooks, Pod Security, quota)."""
    refused = cluster.failed_creates(namespace)
    short_of = []
    for deployment in cluster.plane.items("deployments", namespace):
        wanted, made = deployment["spec"].get("replicas", 1), deployment.get("status", {}).get("replicas", 0)
        if made < wanted:
            short_of.append(f"Deployment/{deployment['metadata']['name']} has {made} of {wanted} Pods")
    problems = refused + short_of
    return Verdict(f"{namespace}: every Pod admitted", not problems, "; ".join(problems))


def kserve_made(cluster: LocalCluster, namespace: str, env: str) -> Verdict:
    """KServe's Deployment, Service, HPA and injected containers are what the manifests rely on."""
    made = cluster.created(namespace)
    problems = [f"no {kind}" for kind, obj in made.items() if obj is None]
    if not problems:
        service, pod, hpa = made["Service"], made["Pod"], made["HorizontalPodAutoscaler"]
        ports = [(p["port"], p.get("targetPort")) for p in service["spec"]["ports"]]
        if ports != [(80, 9081)]:
            problems.append(f"Service mpg-predictor ports {ports}, expected 80 -> 9081 (the agent)")
        if service["spec"].get("selector") != {"app": "isvc.mpg-predictor"}:
            problems.append(f"Service selector {service['spec'].get('selector')}")
        containers = {c["name"]: c for c in pod["spec"]["containers"]}
        agent_ports = [p["containerPort"] for p in (containers.get("agent") or {}).get("ports") or []]
        if agent_ports != [9081]:
            problems.append(f"agent container ports {agent_ports or 'missing'}, expected [9081]")
        model_ports = [p["containerPort"] for p in containers["kserve-container"].get("ports") or []]
        if model_ports != [8080]:
            problems.append(f"kserve-container ports {model_ports}")
        init = {c["name"]: c for c in pod["spec"].get("initContainers") or []}
        if "storage-initializer" not in init:
            problems.append("no storage-initializer injected")
        labels = pod["metadata"]["labels"]
        for key, value in {
            "serving.kserve.io/inferenceservice": "mpg",
            "component": "predictor",
            "app": "isvc.mpg-predictor",
        }.items():
            if labels.get(key) != value:
                problems.append(f"Pod label {key}={labels.get(key)!r}, expected {value!r}")
        isvc = next(o for o in cluster.tree(f"overlays/{env}") if o["kind"] == "InferenceService")["spec"]["predictor"]
        got = (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"])
        if got != (isvc["minReplicas"], isvc["maxReplicas"]):
            problems.append(f"HPA replicas {got}, the overlay says {(isvc['minReplicas'], isvc['maxReplicas'])}")
    return Verdict(
        f"{namespace}: KServe created the Deployment, Service, HPA and injected agent",
        not problems,
        "; ".join(problems),
    )


def endpoints(cluster: LocalCluster, namespace: str) -> Verdict:
    """Every Service selects ready Pods (its EndpointSlices, made by kube-controller-manager, have an address)."""
    empty = []
    for service in cluster.plane.items("services", namespace):
        name = service["metadata"]["name"]
        slices = cluster.plane.items("endpointslices", namespace, f"kubernetes.io/service-name={name}")
        ready = [e for s in slices for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready")]
        if not ready:
            empty.append(f"Service/{name} selects no ready Pod ({service['spec'].get('selector')})")
    return Verdict(f"{namespace}: every Service has ready endpoints", not empty, "; ".join(empty))


def healthy(cluster: LocalCluster, objects: list[Obj], what: str) -> Verdict:
    bad = []
    for obj in objects:
        verdict = argocd.health(cluster.live(obj))
        if verdict is not None and verdict.status != argocd.HEALTHY:
            bad.append(f"{obj['kind']}/{obj['metadata']['name']} {verdict}")
    return Verdict(f"{what}: every object Healthy in Argo CD's terms", not bad, "; ".join(bad))


def with_model(objects: list[Obj], uri: str) -> list[Obj]:
    """The rendered overlay as it renders after a bump to ``uri`` (the only line a bump changes)."""
    objects = copy.deepcopy(objects)
    for obj in objects:
        if obj["kind"] == "InferenceService":
            obj["spec"]["predictor"]["model"]["storageUri"] = uri
    return objects


def serves(cluster: LocalCluster, namespace: str, uri: str, timeout: float = 60) -> Obj:
    """Wait until the rollout to ``uri`` is complete; the Deployment."""

    def done() -> Obj | None:
        verdict = environment_health(cluster.plane.kubectl, namespace, uri)
        return verdict if verdict.status == "Healthy" else None

    try:
        return wait_until(done, timeout, f"{namespace} serves {uri}", interval=0.5)
    except ControlPlaneError as e:
        raise ControlPlaneError(f"{e}: {environment_health(cluster.plane.kubectl, namespace, uri)}") from e


def transitions(cluster: LocalCluster, uris: dict[str, str]) -> list[Verdict]:
    """Bump staging, promote it to production, roll production back, delete: each as the merged commit renders,
    accepted by KServe's webhooks, the Deployment then naming the model and every new Pod ready."""
    verdicts = []
    staging, production = cluster.tree("overlays/staging"), cluster.tree("overlays/production")
    steps = [
        ("bump staging", staging, "mpg-staging", uris["new"]),
        ("promote to production", production, "mpg-production", uris["new"]),
        ("roll production back", production, "mpg-production", uris["old"]),
    ]
    for what, tree, namespace, uri in steps:
        try:
            cluster.sync(with_model(tree, uri), wait=False)
            serves(cluster, namespace, uri)
            verdicts.append(Verdict(f"{what}: accepted and rolled out", True))
        except ControlPlaneError as e:
            verdicts.append(Verdict(f"{what}: accepted and rolled out", False, str(e)))
    return verdicts


def delete(cluster: LocalCluster, namespace: str) -> Verdict:
    """Deleting the InferenceService (Argo CD's prune): KServe's finalizer lets it go, its objects follow."""
    result = cluster.plane.kubectl("delete", "inferenceservice", "mpg", "-n", namespace, "--timeout=60s", check=False)
    if result.returncode != 0:
        return Verdict(f"{namespace}: delete the InferenceService", False, result.stderr.strip())
    try:
        wait_until(
            lambda: cluster.plane.get("deployment", "mpg-predictor", namespace) is None, 60, "its Deployment is gone"
        )
    except ControlPlaneError as e:
        return Verdict(f"{namespace}: delete the InferenceService", False, str(e))
    return Verdict(f"{namespace}: delete the InferenceService", True)


def to_json(verdicts: list[Verdict]) -> str:
    return json.dumps([v.__dict__ for v in verdicts], indent=2)
