"""Is the model git names serving, in a cluster: the judgement behind ``mlops gitops status --cluster`` and the
smoke check, stricter than KServe's Ready and Argo CD's Healthy.

In RawDeployment (``Standard``) mode KServe's Ready is the Deployment's ``Available`` condition
(``PropagateRawStatus``, pkg/apis/serving/v1beta1/inference_service_status.go), and with ``maxUnavailable: 0``
the old Pods keep it true while the new model's Pods fail; Argo CD's InferenceService health reads only those
conditions (``resource_customizations/serving.kserve.io/InferenceService/health.lua``) and maps a False one to
Progressing, never Degraded. So this reads the rollout itself: the Deployment KServe made, its newest
ReplicaSet and that ReplicaSet's Pods.

- Healthy: the InferenceService names the model git wants, the Deployment's template names it too, every
  replica is of that template, available, and no old one is left;
- Degraded: a Pod of the new template restarts or cannot start (CrashLoopBackOff, an image that cannot be
  pulled, a container that exited in error), the new ReplicaSet cannot create its Pods (admission refused), or
  the Deployment exceeded its progress deadline; the old model may still be serving;
- Progressing: anything in between (the controller has not caught up, new Pods not ready yet).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]
Kubectl = Callable[..., subprocess.CompletedProcess]

SOURCE_URI = "internal.serving.kserve.io/storage-initializer-sourceuri"  # KServe's annotation on the template
REVISION = "deployment.kubernetes.io/revision"
FAILING = {
    "CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError",
    "CreateContainerError", "InvalidImageName", "RunContainerError",
}  # fmt: skip


@dataclass(frozen=True)
class EnvironmentHealth:
    status: str  # Healthy, Progressing, Degraded, Missing
    message: str
    serving: str | None = None  # the storageUri the InferenceService names

    def __str__(self) -> str:
        return f"{self.status}: {self.message}"


def _get(kubectl: Kubectl, *args: str) -> Obj | None:
    result = kubectl("get", *args, "-o", "json", check=False)
    if result.returncode != 0:
        if "NotFound" in result.stderr:
            return None
        raise RuntimeError(result.stderr.strip())
    return json.loads(result.stdout)


def _pod_problem(pod: Obj) -> str | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        state = status.get("state") or {}
        waiting = (state.get("waiting") or {}).get("reason")
        if waiting in FAILING:
            return f"{pod['metadata']['name']}: container {status['name']} {waiting}"
        terminated = state.get("terminated") or {}
        if terminated and terminated.get("exitCode", 0) != 0:
            return f"{pod['metadata']['name']}: container {status['name']} exited {terminated['exitCode']}"
    return None


def environment_health(kubectl: Kubectl, namespace: str, wanted: str, isvc: str = "mpg") -> EnvironmentHealth:
    """How the rollout of ``wanted`` (a model URI) in ``namespace`` stands."""
    service = _get(kubectl, "inferenceservice", isvc, "-n", namespace)
    if service is None:
        return EnvironmentHealth("Missing", f"no InferenceService {isvc} in {namespace}")
    serving = service["spec"]["predictor"].get("model", {}).get("storageUri")
    if serving != wanted:
        return EnvironmentHealth("Progressing", f"the InferenceService names {serving}, not {wanted} yet", serving)
    deployment = _get(kubectl, "deployment", f"{isvc}-predictor", "-n", namespace)
    if deployment is None:
        return EnvironmentHealth("Progressing", "KServe has not created the Deployment yet", serving)
    template = deployment["spec"]["template"]["metadata"].get("annotations") or {}
    if template.get(SOURCE_URI) != wanted:
        return EnvironmentHealth("Progressing", "KServe has not put the model into the Deployment yet", serving)
    status = deployment.get("status") or {}
    if deployment["metadata"].get("generation", 0) > status.get("observedGeneration", 0):
        return EnvironmentHealth("Progressing", "the Deployment controller has not seen the change yet", serving)
    revision = (deployment["metadata"].get("annotations") or {}).get(REVISION)
    replica_sets = (_get(kubectl, "replicasets", "-n", namespace, "-l", f"app=isvc.{isvc}-predictor") or {}).get(
        "items"
    ) or []
    newest = next(
        (rs for rs in replica_sets if (rs["metadata"].get("annotations") or {}).get(REVISION) == revision), None
    )
    if newest is not None:
        failure = next(
            (c for c in (newest.get("status") or {}).get("conditions") or [] if c["type"] == "ReplicaFailure"), None
        )
        if failure and failure.get("status") == "True":
            return EnvironmentHealth("Degraded", f"the new model's Pods are refused: {failure.get('message')}", serving)
        hash_ = newest["metadata"]["labels"].get("pod-template-hash")
        pods = (_get(kubectl, "pods", "-n", namespace, "-l", f"pod-template-hash={hash_}") or {}).get("items") or []
        problems = [p for p in map(_pod_problem, pods) if p]
        if problems:
            return EnvironmentHealth("Degraded", f"the new model's Pods fail ({'; '.join(problems)})", serving)
    progressing = next((c for c in status.get("conditions") or [] if c["type"] == "Progressing"), {})
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return EnvironmentHealth("Degraded", "the rollout exceeded its progress deadline", serving)
    wanted_replicas = deployment["spec"].get("replicas", 1)
    updated, available = status.get("updatedReplicas", 0), status.get("availableReplicas", 0)
    if updated < wanted_replicas or status.get("replicas", 0) > updated or available < updated:
        return EnvironmentHealth(
            "Progressing",
            f"{updated} of {wanted_replicas} replicas run the new model, {available} available, "
            f"{max(status.get('replicas', 0) - updated, 0)} old left",
            serving,
        )
    return EnvironmentHealth("Healthy", f"{updated} of {wanted_replicas} replicas serve it, no old one left", serving)
