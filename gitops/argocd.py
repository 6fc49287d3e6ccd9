"""What Argo CD does with a tree, where Argo CD itself cannot run (its sync engine needs its repo-server,
Redis and a cluster it is deployed in): apply it wave by wave, and judge each object's health as Argo CD does.

- Health, for the kinds Argo CD judges with a Lua script (``resource_customizations/<group>/<kind>/health.lua``:
  InferenceService, CronJob, ...): that very script, read from the argo-cd module of the version
  ``infra/controlplane.toml`` names, run by Lua 5.1 (lupa; Argo CD runs gopher-lua, also 5.1).
- Health, for the kinds Argo CD judges in Go (gitops-engine ``pkg/health``): Deployment, Ingress, Job and
  Service, restated below from ``health_deployment.go``, ``health_ingress.go``, ``health_job.go`` and
  ``health_service.go`` of the gitops-engine version argo-cd v3.3.0 requires. Any other kind has no health
  (Argo CD ignores it when it waits).
- Sync: the objects of a wave (``argocd.argoproj.io/sync-wave``, default 0) are applied together, server-side,
  then the next wave starts once each object of this one is Healthy (Argo CD's rule: gitops-engine
  ``pkg/sync/sync_context.go``), and within a wave in Argo CD's kind order (``pkg/sync/syncwaves``,
  ``kube.kindOrder``: namespaces first, then policies, accounts, config, services, workloads).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from core.errors import MlopsError

Obj = dict[str, Any]

HEALTHY, PROGRESSING, DEGRADED, SUSPENDED, MISSING = "Healthy", "Progressing", "Degraded", "Suspended", "Missing"

#: gitops-engine pkg/sync/sync_tasks.go kindOrder (the part of it the trees use), applied within one wave
KIND_ORDER = [
    "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy", "PodDisruptionBudget",
    "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass", "PersistentVolume",
    "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding",
    "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service", "DaemonSet", "Pod",
    "ReplicationController", "ReplicaSet", "Deployment", "HorizontalPodAutoscaler", "StatefulSet", "Job",
    "CronJob", "IngressClass", "Ingress", "APIService",
]  # fmt: skip


class HealthScriptError(MlopsError):
    """An Argo CD health script could not be read or run."""


@dataclass(frozen=True)
class Health:
    status: str
    message: str = ""

    def __str__(self) -> str:
        return f"{self.status}" + (f" ({self.message})" if self.message else "")


def wave(obj: Obj) -> int:
    return int(((obj.get("metadata") or {}).get("annotations") or {}).get("argocd.argoproj.io/sync-wave", "0"))


def sync_order(objects: list[Obj]) -> list[tuple[int, list[Obj]]]:
    """The waves of ``objects`` in order, each in Argo CD's kind order (unknown kinds last), then by name."""

    def rank(obj: Obj) -> tuple[int, str]:
        kind = obj["kind"]
        return (KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER), obj["metadata"]["name"])

    waves: dict[int, list[Obj]] = {}
    for obj in objects:
        waves.setdefault(wave(obj), []).append(obj)
    return [(number, sorted(waves[number], key=rank)) for number in sorted(waves)]


# --- health ---------------------------------------------------------------------------------------------------


def _condition(obj: Obj, kind: str) -> Obj | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == kind), None)


def _deployment(obj: Obj) -> Health:
    """gitops-engine pkg/health/health_deployment.go getAppsv1DeploymentHealth."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    name = obj["metadata"]["name"]
    if spec.get("paused"):
        return Health(SUSPENDED, "Deployment is paused")
    if obj["metadata"].get("generation", 0) > status.get("observedGeneration", 0):
        return Health(
            PROGRESSING, "Waiting for rollout to finish: observed deployment generation less than desired generation"
        )
    progressing = _condition(obj, "Progressing")
    updated, replicas = status.get("updatedReplicas", 0), status.get("replicas", 0)
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        return Health(DEGRADED, f'Deployment "{name}" exceeded its progress deadline')
    if spec.get("replicas") is not None and updated < spec["replicas"]:
        return Health(
            PROGRESSING,
            f"Waiting for rollout to finish: {updated} out of {spec['replicas']} new replicas have been updated...",
        )
    if replicas > updated:
        return Health(
            PROGRESSING, f"Waiting for rollout to finish: {replicas - updated} old replicas are pending termination..."
        )
    available = status.get("availableReplicas", 0)
    if available < updated:
        return Health(
            PROGRESSING, f"Waiting for rollout to finish: {available} of {updated} updated replicas are available..."
        )
    return Health(HEALTHY)


def _ingress(obj: Obj) -> Health:
    """gitops-engine pkg/health/health_ingress.go: Healthy once the controller gave it an address."""
    found = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress")
    return Health(HEALTHY if found else PROGRESSING)


def _service(obj: Obj) -> Health:
    """gitops-engine pkg/health/health_service.go: a LoadBalancer waits for its address, others are Healthy."""
    if (obj.get("spec") or {}).get("type") == "LoadBalancer":
        return _ingress(obj)
    return Health(HEALTHY)


def _job(obj: Obj) -> Health:
    """gitops-engine pkg/health/health_job.go getBatchv1JobHealth."""
    failed = complete = suspended = False
    message = fail_message = ""
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition["type"] == "Failed":
            failed = complete = True
            fail_message = condition.get("message", "")
        elif condition["type"] == "Complete":
            complete, message = True, condition.get("message", "")
        elif condition["type"] == "Suspended":
            complete, message = True, condition.get("message", "")
            suspended = condition.get("status") == "True"
    if not complete:
        return Health(PROGRESSING, message)
    if failed:
        return Health(DEGRADED, fail_message)
    return Health(SUSPENDED, fail_message) if suspended else Health(HEALTHY, message)


BUILT_IN: dict[tuple[str, str], Callable[[Obj], Health]] = {
    ("apps", "Deployment"): _deployment,
    ("networking.k8s.io", "Ingress"): _ingress,
    ("", "Service"): _service,
    ("batch", "Job"): _job,
}


def _group(obj: Obj) -> str:
    api = obj.get("apiVersion", "")
    return api.split("/")[0] if "/" in api else ""


@cache
def _scripts_root() -> Path:
    from infra.gobuild import module_dir, versions

    return module_dir("github.com/argoproj/argo-cd/v3", versions().argocd) / "resource_customizations"


@cache
def _lua_script(group: str, kind: str) -> str | None:
    path = _scripts_root() / (group or "_") / kind / "health.lua"
    return path.read_text() if path.is_file() else None


def _lua_health(script: str, obj: Obj) -> Health:
    try:
        from lupa.lua51 import LuaRuntime
    except ImportError as e:
        raise HealthScriptError("lupa is not installed: `make install` installs it (Argo CD's health scripts)") from e
    lua = LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    try:
        result = lua.execute(script)
    except Exception as e:  # lupa raises LuaError subclasses of Exception
        raise HealthScriptError(f"Argo CD's health script for {obj['kind']} failed: {e}") from e
    return Health(str(result["status"]), str(result["message"] or ""))


def health(obj: Obj | None) -> Health | None:
    """Argo CD's health of ``obj`` (None: a kind it does not judge); an object that does not exist is Missing."""
    if obj is None:
        return Health(MISSING)
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return Health(PROGRESSING, "Pending deletion")
    group, kind = _group(obj), obj["kind"]
    script = _lua_script(group, kind)
    if script is not None:
        return _lua_health(script, obj)
    check = BUILT_IN.get((group, kind))
    return check(obj) if check else None
