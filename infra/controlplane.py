"""A real Kubernetes control plane on loopback, and KServe's own controller and webhooks on it.

etcd, kube-apiserver (RBAC, the default admission chain: PodSecurity, ResourceQuota, LimitRanger,
ServiceAccount, the admission webhooks) and kube-controller-manager (Deployments -> ReplicaSets -> Pods,
CronJobs -> Jobs -> Pods, the namespace and garbage collectors, ServiceAccounts, quota) run as this machine's
processes, built by ``infra.gobuild``; KServe's manager runs beside them with its webhooks served on
127.0.0.1 (a CA made here, the release's webhook configurations rewritten to that URL and CA bundle, as
controller-runtime's envtest does, ``pkg/envtest/webhook.go`` ``updateClientConfig``).

What cannot run here, and what stands in for it:

- no kubelet and no scheduler: Pods are created (through the webhooks and Pod Security) but never run.
  ``Kubelet`` writes a Pod's status through the status subresource, as a kubelet would, and only that; the
  ReplicaSet and Deployment controllers, the Job controller and KServe then compute everything else;
- no CNI: NetworkPolicies are stored, not enforced (an independent evaluator judges them);
- no container images are pulled: an image reference is only a string here.

Everything lives in a folder this module creates and removes (``--keep`` leaves it, with a kubeconfig).
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from core.errors import MlopsError
from infra.gobuild import Binaries, module_dir, versions
from infra.http import free_port, stop_process
from infra.manifests import kubectl as kubectl_program

Obj = dict[str, Any]


class ControlPlaneError(MlopsError):
    """The local control plane did not start, or an object was refused."""


class ApplyRefusedError(ControlPlaneError):
    """The API server (its schema, an admission plugin or a webhook) refused an object."""


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """``check()``'s first truthy answer within ``timeout`` seconds, or ControlPlaneError naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            answer = check()
        except (httpx.HTTPError, ControlPlaneError) as e:
            last, answer = e, None
        if answer:
            return answer
        time.sleep(interval)
    raise ControlPlaneError(f"not within {timeout:g} s: {what}" + (f" (last: {last})" if last else ""))


def _key_pair(directory: Path, name: str) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = directory / f"{name}.key"
    public = directory / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public


def serving_certificate(directory: Path) -> bytes:
    """A CA and a certificate for 127.0.0.1 signed by it, as ``tls.crt``/``tls.key`` in ``directory`` (where
    controller-runtime's webhook server reads them); returns the CA's PEM, the webhooks' caBundle."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mlops local webhook CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "tls.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca.public_bytes(serialization.Encoding.PEM)


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen
    log: Path

    def tail(self, lines: int = 5) -> str:
        text = self.log.read_text(errors="replace").strip().splitlines() if self.log.is_file() else []
        return " | ".join(text[-lines:]) or "(no output)"


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager, started by ``start()``, stopped by ``stop()``."""

    binaries: Binaries
    workdir: Path
    processes: list[_Process] = field(default_factory=list)
    server: str = ""
    token: str = ""

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> _Process:
        log = self.workdir / f"{name}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(  # noqa: S603 (our own built binaries, our own arguments)
                args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}
            )
        process = _Process(name, popen, log)
        self.processes.append(process)
        return process

    def _alive(self, process: _Process) -> None:
        if process.popen.poll() is not None:
            raise ControlPlaneError(f"{process.name} exited ({process.popen.returncode}): {process.tail()}")

    def start(self) -> ControlPlane:
        pki = self.workdir / "pki"
        pki.mkdir(parents=True)
        sa_key, sa_pub = _key_pair(pki, "service-account")
        self.token = secrets.token_hex(16)
        (pki / "tokens.csv").write_text(f"{self.token},admin,admin,system:masters\n")

        etcd_client, etcd_peer = free_port(), free_port()
        etcd = self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_client}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_client}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=default=http://127.0.0.1:{etcd_peer}",
                "--unsafe-no-fsync",  # a throwaway store: no fsync per write (envtest does the same)
                "--max-request-bytes=10485760",  # KServe's CRDs are over the default 1.5 MiB
                "--log-level=warn",
            ],
        )

        def etcd_healthy() -> bool:
            self._alive(etcd)
            return httpx.get(f"http://127.0.0.1:{etcd_client}/health", timeout=2).status_code == 200

        wait_until(etcd_healthy, 30, "etcd answers /health")

        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        apiserver = self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers=http://127.0.0.1:{etcd_client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=RBAC",
                f"--token-auth-file={pki / 'tokens.csv'}",
                f"--service-account-issuer=https://127.0.0.1:{port}",
                f"--service-account-key-file={sa_pub}",
                f"--service-account-signing-key-file={sa_key}",
                "--allow-privileged=true",  # as a real cluster: Pod Security, not this flag, is what refuses
                "--profiling=false",
                "--endpoint-reconciler-type=none",  # no kubelet or node: nothing would serve the endpoint
            ],
        )

        def apiserver_ready() -> bool:
            self._alive(apiserver)
            if not self.ca.is_file():  # written before it listens
                return False
            answer = httpx.get(f"{self.server}/readyz", verify=self._tls(), timeout=2, headers=self._auth())
            return answer.status_code == 200

        wait_until(apiserver_ready, 90, "kube-apiserver answers /readyz")
        self.kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {"name": "local", "cluster": {"server": self.server, "certificate-authority": str(self.ca)}}
                    ],
                    "users": [{"name": "admin", "user": {"token": self.token}}],
                    "contexts": [{"name": "local", "context": {"cluster": "local", "user": "admin"}}],
                    "current-context": "local",
                }
            )
        )
        self.kubeconfig.chmod(0o600)
        manager = self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries.kube_controller_manager),
                f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                f"--service-account-private-key-file={sa_key}",
                f"--root-ca-file={self.workdir / 'apiserver-certs' / 'apiserver.crt'}",
                # every default controller, but those that need nodes or a cloud (nothing to do without them,
                # and the node lifecycle controller would evict Pods bound to the kubelet stand-in's node)
                "--controllers=*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-route,-service,-persistentvolume-binder",
                "--concurrent-deployment-syncs=5",
            ],
        )
        wait_until(
            lambda: self._alive(manager) or self.get("serviceaccount", "default", "default"),
            60,
            "kube-controller-manager creates the default ServiceAccount",
        )
        return self

    @property
    def ca(self) -> Path:
        """kube-apiserver's self-signed serving certificate (it makes one in --cert-dir), our trust anchor."""
        return self.workdir / "apiserver-certs" / "apiserver.crt"

    def _tls(self):
        import ssl

        return ssl.create_default_context(cafile=str(self.ca))

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def api(self, method: str, path: str, body: Obj | None = None, missing_ok: bool = False) -> Obj | None:
        """One call of the API server's REST interface (merge patches for PATCH)."""
        headers = self._auth()
        if method == "PATCH":
            headers["Content-Type"] = "application/merge-patch+json"
        answer = httpx.request(
            method,
            f"{self.server}{path}",
            json=body,
            headers=headers,
            verify=self._tls(),
            timeout=30,
        )
        if missing_ok and answer.status_code == 404:
            return None
        if answer.status_code >= 400:
            raise ControlPlaneError(f"{method} {path}: {answer.status_code} {answer.text[:300]}")
        return answer.json()

    def stop(self) -> None:
        for process in reversed(self.processes):
            stop_process(process.popen, timeout=10)
        self.processes.clear()

    def check_alive(self) -> None:
        for process in self.processes:
            self._alive(process)

    # --- kubectl -------------------------------------------------------------------------------------------

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [kubectl_program(), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args[:3])}: {result.stderr.strip()}")
        return result

    def apply(
        self, objects: Iterable[Obj], *, manager: str = "argocd-controller", force: bool = False, dry_run: bool = False
    ) -> list[str]:
        """Server-side apply, as Argo CD's ``ServerSideApply=true`` does; returns the API server's warnings (Pod
        Security's "would violate" among them). A refusal raises ApplyRefusedError with the server's words."""
        objects = list(objects)
        if not objects:
            return []
        args = ["apply", "--server-side", f"--field-manager={manager}", "-f", "-"]
        if force:
            args.append("--force-conflicts")
        if dry_run:
            args.append("--dry-run=server")
        result = self.kubectl(*args, input=yaml.safe_dump_all(objects), check=False)
        if result.returncode != 0:
            raise ApplyRefusedError(result.stderr.strip())
        return [line for line in result.stderr.splitlines() if line.startswith("Warning:")]

    def get(self, kind: str, name: str | None = None, namespace: str | None = None) -> Obj | None:
        """One object (None when there is none) or, without ``name``, the list."""
        args = ["get", kind, *([name] if name else []), "-o", "json"]
        args += ["-n", namespace] if namespace else (["--all-namespaces"] if name is None else [])
        result = self.kubectl(*args, check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr or "not found" in result.stderr:
                return None
            raise ControlPlaneError(f"kubectl get {kind} {name or ''}: {result.stderr.strip()}")
        return json.loads(result.stdout)

    def items(self, kind: str, namespace: str | None = None, selector: str | None = None) -> list[Obj]:
        args = ["get", kind, "-o", "json", *(["-n", namespace] if namespace else ["--all-namespaces"])]
        if selector:
            args += ["-l", selector]
        return json.loads(self.kubectl(*args).stdout)["items"]

    def patch_status(self, kind: str, name: str, namespace: str, status: Obj) -> None:
        self.kubectl(
            "patch", kind, name, "-n", namespace, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}),
        )  # fmt: skip

    def events(self, namespace: str, reason: str | None = None) -> list[Obj]:
        found = self.items("events", namespace)
        return [e for e in found if reason is None or e.get("reason") == reason]


# --- the kubelet stand-in ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodFate:
    """What the kubelet stand-in reports for a Pod: ready, running but not ready (a model that fails: the
    predictor exits, the kubelet restarts it, CrashLoopBackOff), or (a Job's Pod) finished with an exit code."""

    ready: bool = True
    exit_code: int | None = None


class Kubelet:
    """Writes Pod status as a kubelet would, and nothing else: the ReplicaSet, Deployment and Job controllers and
    KServe compute the rest from it. No kubelet runs here (its containers need a container engine); Pods are
    bound to one Node object as the scheduler would bind them.

    ``fate(pod)`` decides what each new Pod does (default: its containers start and pass their probes; a Job's
    Pod exits 0). A thread does it for every Pod as it appears, as a node would, until ``stop()``.
    """

    NODE = "kubelet-stand-in"

    def __init__(self, plane: ControlPlane, fate: Callable[[Obj], PodFate] | None = None):
        self.plane = plane
        self.fate = fate or (lambda pod: PodFate(exit_code=0 if _owner_kind(pod) == "Job" else None))
        self.seen: dict[str, PodFate] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []
        if plane.api("GET", f"/api/v1/nodes/{self.NODE}", missing_ok=True) is None:
            plane.api("POST", "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.NODE}})

    def start(self) -> Kubelet:
        self._thread = threading.Thread(target=self._loop, name="kubelet-stand-in", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(0.3):
            try:
                self.tick()
            except (httpx.HTTPError, ControlPlaneError) as e:
                if self._stop.is_set():
                    return
                self.errors.append(str(e))

    def tick(self) -> None:
        for pod in self.plane.api("GET", "/api/v1/pods")["items"]:
            uid = pod["metadata"]["uid"]
            if uid in self.seen or pod["metadata"].get("deletionTimestamp"):
                continue
            fate = self.fate(pod)
            if fate.exit_code is not None:
                self.finish(pod, fate.exit_code)
            else:
                self.run(pod, fate.ready)
            self.seen[uid] = fate

    @staticmethod
    def _now() -> str:
        return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _bind(self, pod: Obj) -> None:
        if pod["spec"].get("nodeName"):
            return
        meta = pod["metadata"]
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.NODE},
        }
        self.plane.api("POST", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/binding", binding)

    def _status(self, pod: Obj, status: Obj) -> None:
        meta = pod["metadata"]
        self.plane.api(
            "PATCH", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status", {"status": status}
        )

    def run(self, pod: Obj, ready: bool = True) -> None:
        """The Pod's init containers completed and its containers started: ready, or restarting (the model
        server exits), as a kubelet reports them."""
        self._bind(pod)
        now = self._now()
        state = {"running": {"startedAt": now}}
        if not ready:
            state = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}}
        containers = [
            {
                "name": c["name"], "image": c["image"], "imageID": "", "ready": ready, "started": ready,
                "restartCount": 0 if ready else 3, "state": state,
            }
            for c in pod["spec"]["containers"]
        ]  # fmt: skip
        init = [
            {
                "name": c["name"], "image": c["image"], "imageID": "", "ready": True, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}},
            }
            for c in pod["spec"].get("initContainers") or []
        ]  # fmt: skip
        flag = "True" if ready else "False"
        self._status(
            pod,
            {
                "phase": "Running",
                "startTime": now,
                "podIP": "10.244.0.10",
                "podIPs": [{"ip": "10.244.0.10"}],
                "hostIP": "10.0.0.2",
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                    {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                    {"type": "ContainersReady", "status": flag, "lastTransitionTime": now},
                    {"type": "Ready", "status": flag, "lastTransitionTime": now},
                ],
                "containerStatuses": containers,
                **({"initContainerStatuses": init} if init else {}),
            },
        )

    def finish(self, pod: Obj, exit_code: int) -> None:
        """The Pod's containers ran to completion with ``exit_code`` (a Job's Pod)."""
        self._bind(pod)
        now = self._now()
        terminated = {
            "exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error", "startedAt": now,
            "finishedAt": now,
        }  # fmt: skip
        self._status(
            pod,
            {
                "phase": "Succeeded" if exit_code == 0 else "Failed",
                "startTime": now,
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                    {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now},
                ],
                "containerStatuses": [
                    {"name": c["name"], "image": c["image"], "imageID": "", "ready": False, "restartCount": 0,
                     "state": {"terminated": terminated}}
                    for c in pod["spec"]["containers"]
                ],
            },
        )  # fmt: skip


def _owner_kind(obj: Obj) -> str | None:
    owners = obj["metadata"].get("ownerReferences") or []
    return owners[0]["kind"] if owners else None


# --- KServe ---------------------------------------------------------------------------------------------------

#: Objects of KServe's release YAML that do not run here: cert-manager's (no cert-manager: the webhooks get the
#: CA made here) and the manager's own workloads (the manager runs as a process of this machine).
_NOT_INSTALLED = {"Certificate", "Issuer", "Deployment", "DaemonSet"}


def kserve_install_documents(release: str) -> tuple[list[Obj], list[Obj]]:
    """The release's install YAML (``install/<release>/kserve.yaml``) and its cluster resources
    (ClusterServingRuntimes, ClusterStorageContainer), read from the module of that exact release."""
    root = module_dir("github.com/kserve/kserve", release) / "install" / release
    install = [d for d in yaml.safe_load_all((root / "kserve.yaml").read_text()) if d]
    cluster = [d for d in yaml.safe_load_all((root / "kserve-cluster-resources.yaml").read_text()) if d]
    return install, cluster


def crds_from(module: str, version: str, relative: Iterable[str]) -> list[Obj]:
    root = module_dir(module, version)
    found = []
    for path in relative:
        found += [d for d in yaml.safe_load_all((root / path).read_text()) if d]
    return found


def other_crds() -> list[Obj]:
    """Argo CD's Application and AppProject, prometheus-operator's PodMonitor and PrometheusRule: the CRDs the
    trees name besides KServe's, from the modules of the versions ``infra/controlplane.toml`` names."""
    v = versions()
    return crds_from(
        "github.com/argoproj/argo-cd/v3",
        v.argocd,
        ["manifests/crds/application-crd.yaml", "manifests/crds/appproject-crd.yaml"],
    ) + crds_from(
        "github.com/prometheus-operator/prometheus-operator",
        v.prometheus_operator,
        [
            "example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml",
            "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml",
        ],
    )


def install_crds(plane: ControlPlane, crds: list[Obj]) -> None:
    for crd in crds:  # one at a time: KServe's InferenceService CRD alone is about 1 MB
        plane.apply([crd], manager="crd-install", force=True)
    names = [crd["metadata"]["name"] for crd in crds]
    plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{n}" for n in names])


#: The Service in front of the manager's webhook server (cmd/manager); the release YAML's other webhooks belong
#: to controllers that do not run here (the LLMInferenceService and local-model controllers, 0.16 and later).
MANAGER_WEBHOOK_SERVICE = "kserve-webhook-server-service"


def _ours(configuration: Obj) -> Obj | None:
    """``configuration`` with only the webhooks KServe's manager serves (None if it has none)."""
    kept = [
        w for w in configuration.get("webhooks") or []
        if (w["clientConfig"].get("service") or {}).get("name") == MANAGER_WEBHOOK_SERVICE
    ]  # fmt: skip
    return {**configuration, "webhooks": kept} if kept else None


@dataclass
class KServe:
    """KServe's manager (controller + webhooks) of one release, running against ``plane``."""

    plane: ControlPlane
    release: str
    process: _Process | None = None
    webhook_port: int = 0
    _ca: str = ""

    @property
    def config(self) -> Obj:
        return self.plane.get("configmap", "inferenceservice-config", "kserve") or {}

    def install(self, platform: list[Obj] | None = None) -> KServe:
        """Install the release as its YAML does (but for the manager, run here), then ``platform``: the
        cluster-wide configuration a platform engineer applies over it (docs/cluster.md, Bootstrap)."""
        install, cluster = kserve_install_documents(self.release)
        crds = [d for d in install if d["kind"] == "CustomResourceDefinition"]
        webhooks = [served for d in install if d["kind"].endswith("WebhookConfiguration") if (served := _ours(d))]
        # LLMInferenceServiceConfigs are validated by the llmisvc controller's webhook, which does not run here
        install = [d for d in install if not d["kind"].startswith("LLM")]
        cluster = [d for d in cluster if not d["kind"].startswith("LLM")]
        rest = [
            d
            for d in install
            if d["kind"] not in _NOT_INSTALLED
            and d not in crds
            and d not in webhooks
            and not (d["kind"] == "Secret" and d["metadata"]["name"].endswith("webhook-server-cert"))
        ]
        install_crds(self.plane, crds)
        # 0.20's kserve.yaml holds no Namespace: its install script creates `kserve` first (kubectl create
        # namespace), as this does for every release
        namespaces = [d for d in rest if d["kind"] == "Namespace"] or [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kserve"}}
        ]
        self.plane.apply(namespaces, manager="kserve-install", force=True)
        self.plane.apply([d for d in rest if d["kind"] != "Namespace"], manager="kserve-install", force=True)
        if platform:
            self.plane.apply(
                [d for d in platform if d["kind"] == "ConfigMap"], manager="mpg-mlops-platform", force=True
            )
        self.start()
        self.plane.apply([self._loopback(w) for w in webhooks], manager="kserve-install", force=True)
        self.plane.apply(cluster, manager="kserve-install", force=True)
        if platform:
            self.plane.apply(
                [d for d in platform if d["kind"] != "ConfigMap"], manager="mpg-mlops-platform", force=True
            )
        return self

    def _loopback(self, configuration: Obj) -> Obj:
        configuration = json.loads(json.dumps(configuration))
        configuration["metadata"].pop("annotations", None)  # cert-manager's inject-ca-from: nothing reads it here
        for webhook in configuration.get("webhooks") or []:
            config = webhook["clientConfig"]
            path = (config.pop("service", None) or {}).get("path", "/")
            config["url"] = f"https://127.0.0.1:{self.webhook_port}{path}"
            config["caBundle"] = self._ca
        return configuration

    def start(self) -> None:
        """Start (or restart, after ``stop``) the manager with the certificate its webhook server reads."""
        tmp = self.plane.workdir / f"kserve-{self.release}-tmp"
        certs = tmp / "k8s-webhook-server" / "serving-certs"  # controller-runtime's default CertDir under TMPDIR
        if not self._ca:  # first start: a certificate of its own (a restart keeps it, and its port)
            self._ca = base64.b64encode(serving_certificate(certs)).decode()
            self.webhook_port = free_port()
        probe = free_port()
        self.process = self.plane._spawn(
            f"kserve-manager-{self.release}",
            [
                str(self.plane.binaries.kserve_manager(self.release)),
                "--metrics-addr=0",
                f"--health-probe-addr=127.0.0.1:{probe}",
                f"--webhook-port={self.webhook_port}",
                "--leader-elect=false",
            ],
            env={"KUBECONFIG": str(self.plane.kubeconfig), "POD_NAMESPACE": "kserve", "TMPDIR": str(tmp)},
        )

        def ready() -> bool:
            self.plane._alive(self.process)
            return httpx.get(f"http://127.0.0.1:{probe}/readyz", timeout=2).status_code == 200

        wait_until(ready, 120, f"KServe {self.release}'s manager answers /readyz")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process.popen, timeout=10)
            self.plane.processes.remove(self.process)
            self.process = None


def workdir() -> Path:
    """A fresh folder for one control plane (``mkdtemp``: ours alone, removed by ``remove_workdir``)."""
    return Path(tempfile.mkdtemp(prefix="mlops-controlplane-"))


def remove_workdir(path: Path) -> None:
    if path.name.startswith("mlops-controlplane-") and path.parent == Path(tempfile.gettempdir()):
        shutil.rmtree(path, ignore_errors=True)
