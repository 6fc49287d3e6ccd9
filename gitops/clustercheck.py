"""The cluster half, checked by the real control plane: the trees applied as Argo CD applies them to etcd,
kube-apiserver, kube-controller-manager and KServe's own manager and webhooks (``infra.controlplane``), then
what those controllers made of them read back and judged.

One ``LocalCluster`` per supported KServe release. Its bootstrap is docs/cluster.md's: KServe's release install,
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
#: every tree, in the order the bootstrap (docs/cluster.md) brings them (argocd last: it only holds Argo CD's objects)
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
    """A control plane with one KServe release on it, bootstrapped as docs/cluster.md says."""

    root: Path
    release: str
    progress: Progress = field(default=lambda line: print(line, file=sys.stderr, flush=True))
    platform: bool = True
    plane: ControlPlane | None = None
    kserve: KServe | None = None
    kubelet: Kubelet | None = None
    failing_models: set[str] = field(default_factory=set)
    job_exit_codes: dict[str, int | list[int]] = field(default_factory=dict)  # by Job name prefix; a list: in turn
    page_starts: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)
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

    def upgrade(self, release: str) -> None:
        """KServe upgraded in place to ``release``: its CRDs, configuration and webhooks applied over the old
        ones, the old manager replaced by the new (the platform configuration applied again, as a platform
        engineer's GitOps would)."""
        ensure_built((release,), self.progress)
        self.kserve.stop()
        self.release = release
        self.kserve = KServe(self.plane, release).install(self.platform_documents() if self.platform else None)

    def platform_documents(self) -> list[Obj]:
        return [d for d in yaml.safe_load_all((self.root / PLATFORM).read_text()) if d]

    def _fate(self, pod: Obj) -> PodFate:
        """The kubelet stand-in's answer: a Job's Pod exits with the code set for its Job's prefix (0 unless
        told), a predictor Pod of a model in ``failing_models`` restarts for ever, every other Pod is ready."""
        owners = pod["metadata"].get("ownerReferences") or [{}]
        if owners[0].get("kind") == "Job":
            job = owners[0]["name"]
            code = next((c for p, c in self.job_exit_codes.items() if job.startswith(p)), 0)
            return PodFate(exit_code=code.pop(0) if isinstance(code, list) and len(code) > 1 else _last(code))
        source = (pod["metadata"].get("annotations") or {}).get(
            "internal.serving.kserve.io/storage-initializer-sourceuri"
        )
        return PodFate(ready=source not in self.failing_models)

    # --- the bootstrap (docs/cluster.md) -----------------------------------------------------------------------------

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
            secrets.append(_secret("mpg-monitor-db", namespace, {"url": "postgresql+psycopg://mpg@db/mpg"}))
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
            self._record_page_start(objects, objs)
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

    def _record_page_start(self, tree: list[Obj], wave: list[Obj]) -> None:
        """When the page's nginx (Deployment mpg-client) is applied, which Services its upstream.conf names do not
        exist yet: nginx resolves them as it starts and exits on a missing one (the first sync would deadlock)."""
        import re

        page = next((o for o in wave if o["kind"] == "Deployment" and o["metadata"]["name"] == "mpg-client"), None)
        if page is None:
            return
        namespace = page["metadata"]["namespace"]
        conf = next(
            (o for o in tree if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("mpg-client-conf")), None
        )
        names = re.findall(
            r"^\s*server\s+([a-z0-9.-]+):\d+", (conf or {}).get("data", {}).get("upstream.conf", ""), re.M
        )
        missing = [n for n in names if self.plane.get("service", n.split(".")[0], namespace) is None]
        self.page_starts.setdefault(namespace, (names, missing))  # the first sync: later ones find everything

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


def _last(code: int | list[int]) -> int:
    return code[0] if isinstance(code, list) else code


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


# --- network flows: the real Pods, judged by network-config-analyzer and by gitops.cluster ---------------------


def peer_pods(objects: list[Obj]) -> list[Obj]:
    """Pods standing in for the peers other installs run (kube-dns, the ingress controller, Prometheus, the KFP
    API, istiod, the model store, the database), labelled and listening as ``gitops.cluster`` says they are
    (from those installs' manifests); created so that the policies are judged over Pods, like ours."""
    from gitops.cluster import outside_peers

    made = []
    for peer in outside_peers(objects):
        if peer.namespace is None:
            continue
        ports = [{"containerPort": port, "protocol": protocol} for port, protocol in peer.ports]
        made.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": _slug(peer.name),
                    "namespace": peer.namespace,
                    "labels": {**peer.label_map, PEER_LABEL: _slug(peer.name)},
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65534,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "peer",
                            "image": "registry.k8s.io/pause:3.10",
                            "ports": ports,
                            "resources": {"limits": {"cpu": "10m", "memory": "16Mi"}},
                            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                        }
                    ],
                },
            }
        )
    return made


PEER_LABEL = "mlops.local/peer"  # marks the stand-in peers (and names them back)


def _slug(name: str) -> str:
    return name.lower().replace(" ", "-")


def add_peers(cluster: LocalCluster, objects: list[Obj]) -> None:
    peers = peer_pods(objects)
    namespaces = sorted({p["metadata"]["namespace"] for p in peers})
    cluster.plane.apply(
        [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n, "labels": RESTRICTED}} for n in namespaces],
        manager="platform",
    )
    cluster.plane.apply(peers, manager="platform")


def workload(pod: Obj, plane: ControlPlane) -> str:
    """The name ``gitops.cluster`` gives ``pod``: its Deployment's, its CronJob's, or the peer's."""
    from gitops.cluster import outside_peers  # noqa: F401 (the names come from it, through the peer label)

    labels = pod["metadata"].get("labels") or {}
    if PEER_LABEL in labels:
        return PEER_NAMES.get(labels[PEER_LABEL], labels[PEER_LABEL])
    owners = pod["metadata"].get("ownerReferences") or []
    if not owners:
        return pod["metadata"]["name"]
    kind, name, namespace = owners[0]["kind"], owners[0]["name"], pod["metadata"]["namespace"]
    parent = plane.get(kind.lower(), name, namespace) or {}
    grand = (parent.get("metadata") or {}).get("ownerReferences") or []
    return grand[0]["name"] if grand else name


def _peer_names() -> dict[str, str]:
    from gitops.cluster import DNS, INGRESS_CONTROLLER, ISTIOD, KFP_API, PROMETHEUS

    names = [p.name for p in (DNS, INGRESS_CONTROLLER, ISTIOD, KFP_API, PROMETHEUS)] + ["model store", "PostgreSQL"]
    return {_slug(n): n for n in names}


PEER_NAMES = _peer_names()


def _nca_ports(text: str) -> set[tuple[int, str]] | None:
    """network-config-analyzer's ``{protocols:TCP, UDP,dst_ports:53,5432}`` (None: All connections)."""
    if text.strip() == "All connections":
        return None
    protocols, ports = set(), []
    for part in text.strip().strip("{}").split(",dst_ports:"):
        if part.startswith("protocols:"):
            protocols = {p.strip() for p in part.removeprefix("protocols:").split(",")}
        else:
            ports = [p.strip() for p in part.split(",")]
    found = set()
    for item in ports or ["1-65535"]:
        low, _, high = item.partition("-")
        for number in range(int(low), int(high or low) + 1) if int(high or low) - int(low) < 70000 else ():
            found |= {(number, protocol) for protocol in protocols}
    return found


def nca_allowed(cluster: LocalCluster, namespaces: list[str], nca: str) -> set[tuple[str, str, int, str]]:
    """Every (source, destination, pod port, protocol) network-config-analyzer allows between the Pods of the
    cluster, over the NetworkPolicies of ``namespaces``, on the ports each destination listens on."""
    import subprocess
    import tempfile

    pods = [  # ours, and the peers: another namespace's Pods are another tree's to judge
        p
        for p in cluster.plane.items("pods")
        if p["metadata"]["namespace"] in namespaces or PEER_LABEL in (p["metadata"].get("labels") or {})
    ]
    names = {f"{p['metadata']['namespace']}/{p['metadata']['name']}": workload(p, cluster.plane) for p in pods}
    listening = {}
    for p in pods:
        ports = {
            (c_port["containerPort"], c_port.get("protocol", "TCP"))
            for c in p["spec"]["containers"]
            for c_port in c.get("ports") or []
        }
        listening.setdefault(names[f"{p['metadata']['namespace']}/{p['metadata']['name']}"], set()).update(ports)
    policies = [np for ns in namespaces for np in cluster.plane.items("networkpolicies", ns)]
    with tempfile.TemporaryDirectory(prefix="mlops-nca-") as folder:
        files = {}
        for key, items in (("pods", pods), ("policies", policies), ("namespaces", cluster.plane.items("namespaces"))):
            files[key] = Path(folder) / f"{key}.json"
            files[key].write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        result = subprocess.run(
            [nca, "--connectivity", str(files["policies"]), "-n", str(files["namespaces"]), "-p", str(files["pods"]),
             "--output_endpoints", "pods", "-o", "txt_no_fw_rules"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    if result.returncode not in (0, 1) or "=>" not in result.stdout:
        raise ControlPlaneError(f"network-config-analyzer failed: {(result.stderr or result.stdout).strip()[-500:]}")
    allowed = set()
    for line in result.stdout.splitlines():
        if " => " not in line or " : " not in line:
            continue
        pair, _, connections = line.partition(" : ")
        source, _, destination = (side.strip() for side in pair.partition(" => "))
        src = names.get(source, source)  # an address range stays itself
        dst = names.get(destination, destination)
        ports = _nca_ports(connections)
        for port in listening.get(dst, set()) if ports is None else ports & listening.get(dst, set()):
            allowed.add((src, dst, *port))
    return allowed


def real_pods(cluster: LocalCluster, namespace: str):
    """``gitops.cluster``'s Pods and Services made of what the controllers really created in ``namespace``."""
    from gitops.cluster import Service, pod

    volatile = ("pod-template-hash", "controller-uid", "batch.kubernetes.io/controller-uid", "job-name")
    merged: dict[str, tuple[dict, set, set]] = {}
    for item in cluster.plane.items("pods", namespace):
        labels = item["metadata"].get("labels") or {}
        if PEER_LABEL in labels:
            continue  # another install's (the KFP API in kubeflow): a peer, not ours
        labels = {k: v for k, v in labels.items() if k not in volatile and k != "batch.kubernetes.io/job-name"}
        declared = [p for c in item["spec"]["containers"] for p in c.get("ports") or []]
        entry = merged.setdefault(workload(item, cluster.plane), (labels, set(), set()))
        entry[1].update((p["containerPort"], p.get("protocol", "TCP")) for p in declared)
        entry[2].update((p["name"], p["containerPort"]) for p in declared if p.get("name"))
    pods = [pod(name, namespace, labels, ports, named) for name, (labels, ports, named) in merged.items()]
    services = [
        Service(
            s["metadata"]["name"],
            namespace,
            tuple(sorted((s["spec"].get("selector") or {}).items())),
            tuple((p["port"], p.get("targetPort", p["port"])) for p in s["spec"]["ports"]),
        )
        for s in cluster.plane.items("services", namespace)
    ]
    return pods, services


def flows(cluster: LocalCluster, namespace: str, wanted, tree: list[Obj], nca: str) -> list[Verdict]:
    """The flows ``wanted`` over the real Pods of ``namespace``: each allowed and nothing else, by
    network-config-analyzer; and ``gitops.cluster`` (the fast pre-check) agreeing with it on every connection."""
    from gitops.cluster import evaluate, outside_peers

    pods, services = real_pods(cluster, namespace)
    ours = {p.name for p in pods}
    policies = cluster.plane.items("networkpolicies", namespace)
    model = evaluate(pods, services, outside_peers(tree), policies, wanted)
    by_nca = {hop for hop in nca_allowed(cluster, [namespace], nca) if hop[0] in ours or hop[1] in ours}
    needed = {hop for hops in model.needed.values() for hop in hops}
    blocked = [
        f"{f.what} ({f.destination})" for f in wanted if not model.needed[f] or not set(model.needed[f]) <= by_nca
    ]
    extra = sorted(by_nca - needed)
    verdicts = [
        Verdict(
            f"{namespace}: every flow the loop needs is allowed, nothing else (network-config-analyzer)",
            not blocked and not extra,
            "; ".join([*(f"blocked: {b}" for b in blocked), *(f"allowed, not needed: {h}" for h in extra)]),
        )
    ]
    by_model = {hop for hop, ok in model.allowed.items() if ok}
    differ = sorted(by_model ^ by_nca)
    verdicts.append(
        Verdict(
            f"{namespace}: gitops/cluster.py agrees with network-config-analyzer on every connection",
            not differ,
            "; ".join(
                f"{'only gitops/cluster.py' if h in by_model else 'only network-config-analyzer'} allows {h}"
                for h in differ[:10]
            ),
        )
    )
    return verdicts


# --- the whole check, as `mlops cluster check` runs it ----------------------------------------------------------


#: the flows each namespace's Pods need (gitops.cluster), with the tree whose peers they reach
def _flow_plan():
    from gitops.cluster import KFP_FLOWS, KFP_MULTI_USER_FLOWS, SERVING_FLOWS

    return [
        ("mpg-staging", SERVING_FLOWS, "overlays/staging"),
        ("mpg-production", SERVING_FLOWS, "overlays/production"),
        ("kubeflow", KFP_FLOWS, "base/kfp"),
        ("kubeflow-user-example-com", KFP_MULTI_USER_FLOWS, "overlays/kfp-multi-user"),
    ]


FAILING_MODEL = "s3://mpg-mlops/models/mpg/" + "f" * 64 + "/"  # a model whose predictor never turns ready
NEW_MODEL = "s3://mpg-mlops/models/mpg/" + "a" * 64 + "/"


def bring_up(cluster: LocalCluster) -> list[Verdict]:
    """docs/cluster.md's bootstrap, the peers, and every tree synced as Argo CD syncs it."""
    cluster.bootstrap()
    add_peers(
        cluster, cluster.tree("overlays/staging") + cluster.tree("overlays/production") + cluster.tree("base/kfp")
    )
    verdicts = []
    for name in TREES:
        try:
            warnings = cluster.sync(cluster.tree(name))
            if name in ("overlays/staging", "overlays/production"):
                namespace = SERVING[name.split("/")[1]]
                names, missing = cluster.page_starts.get(namespace, ([], ["(the page was never applied)"]))
                verdicts.append(
                    Verdict(
                        f"{namespace}: the Services the page's nginx resolves exist as it starts ({', '.join(names)})",
                        bool(names) and not missing,
                        f"missing: {', '.join(missing)}" if missing else "",
                    )
                )
            pod_security = [w for w in warnings if "PodSecurity" in w]
            verdicts.append(
                Verdict(
                    f"{name}: synced wave by wave, every object accepted and Healthy",
                    not pod_security,
                    "; ".join(pod_security),
                )
            )
        except ControlPlaneError as e:
            verdicts.append(Verdict(f"{name}: synced wave by wave, every object accepted and Healthy", False, str(e)))
    return verdicts


def run_check(cluster: LocalCluster, nca: str) -> list[Verdict]:
    """Every verdict of the module doc, on a started cluster; the cluster is left as the last step left it."""
    verdicts = bring_up(cluster)
    for namespace in ("mpg-staging", "mpg-production", "kubeflow", "kubeflow-user-example-com"):
        try:
            jobs = cluster.run_cronjobs(namespace)
            failed = [
                j["metadata"]["name"]
                for j in jobs
                if any(c["type"] == "Failed" for c in j["status"].get("conditions") or [])
            ]
            verdicts.append(
                Verdict(f"{namespace}: a Job of each CronJob runs", not failed, f"failed: {failed}" if failed else "")
            )
        except ControlPlaneError as e:
            verdicts.append(Verdict(f"{namespace}: a Job of each CronJob runs", False, str(e)))
    for env, namespace in SERVING.items():
        verdicts += [kserve_made(cluster, namespace, env), endpoints(cluster, namespace)]
        verdicts.append(healthy(cluster, cluster.tree(f"overlays/{env}"), f"overlays/{env}"))
    for namespace in ("mpg-staging", "mpg-production", "kubeflow", "kubeflow-user-example-com"):
        verdicts.append(admitted(cluster, namespace))
    for namespace, wanted, tree in _flow_plan():
        try:
            verdicts += flows(cluster, namespace, wanted, cluster.tree(tree), nca)
        except ControlPlaneError as e:
            verdicts.append(Verdict(f"{namespace}: network flows", False, str(e)))
    old = next(o for o in cluster.tree("overlays/staging") if o["kind"] == "InferenceService")
    verdicts += transitions(cluster, {"old": old["spec"]["predictor"]["model"]["storageUri"], "new": NEW_MODEL})
    verdicts.append(failing_model(cluster))
    verdicts.append(delete(cluster, "mpg-production"))
    return verdicts


def failing_model(cluster: LocalCluster) -> Verdict:
    """A bump to a model whose Pods never become ready: KServe's Ready stays true (the old Pods are Available),
    and the judgement of ``mlops gitops status`` and the smoke check must say Degraded, not Healthy."""
    cluster.failing_models.add(FAILING_MODEL)
    what = "a new model whose Pods never become ready reads Degraded"
    try:
        cluster.sync(with_model(cluster.tree("overlays/staging"), FAILING_MODEL), wait=False)
        judged = wait_until(
            lambda: (
                (h := environment_health(cluster.plane.kubectl, "mpg-staging", FAILING_MODEL)).status != "Progressing"
                and h
            ),
            60,
            "the rollout is judged",
            interval=0.5,
        )
    except ControlPlaneError as e:
        return Verdict(what, False, str(e))
    return Verdict(what, judged.status == "Degraded", str(judged))


def check(
    root: Path, releases: tuple[str, ...], nca: str, progress: Progress, keep: bool = False
) -> dict[str, list[Verdict]]:
    """``run_check`` on one control plane per release; ``keep`` leaves the last one running."""
    results = {}
    for index, release in enumerate(releases):
        cluster = LocalCluster(root, release, progress=progress)
        try:
            cluster.start()
            results[release] = run_check(cluster, nca)
        except ControlPlaneError as e:
            results[release] = [Verdict("the control plane starts", False, str(e))]
        finally:
            last = index == len(releases) - 1
            cluster.stop(keep=keep and last)
            if keep and last and cluster.plane is not None:
                progress(f"  left running: export KUBECONFIG={cluster.plane.kubeconfig}")
    return results
