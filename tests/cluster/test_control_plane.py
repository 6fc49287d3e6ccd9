"""The cluster half on the real controllers of every supported KServe release: each verdict of
`mlops cluster check`, then the mutations only the real thing catches, each applied and its failure expected.

Upstream sources for what the controllers decide here: KServe's webhooks (pkg/apis/serving/v1beta1/
inference_service_validation.go, pkg/webhook/admission/pod/storage_initializer_injector.go, agent_injector.go),
its reconcilers (pkg/controller/v1beta1/inferenceservice/reconcilers/{deployment,service,hpa}), kube-apiserver's
Pod Security admission (k8s.io/pod-security-admission) and strict field validation, kube-controller-manager's
ReplicaSet, Deployment, Job, CronJob, EndpointSlice and garbage collector controllers."""

from __future__ import annotations

import copy

import pytest

from gitops.cluster import SERVING_FLOWS
from gitops.clustercheck import (
    NEW_MODEL,
    SyncError,
    admitted,
    endpoints,
    flows,
    with_model,
)
from infra.controlplane import ApplyRefusedError, wait_until
from infra.gobuild import short


def test_every_verdict_of_the_check_holds(cluster):
    failed = [str(v) for v in cluster.verdicts if not v.ok]
    assert not failed, "\n".join(failed)
    assert len(cluster.verdicts) >= 30, "the check judged less than it should"


def in_namespace(objects: list[dict], namespace: str) -> list[dict]:
    """A tree's objects moved to ``namespace`` (its Namespace renamed): a scratch copy of an environment."""
    moved = copy.deepcopy(objects)
    for obj in moved:
        if obj["kind"] == "Namespace":
            obj["metadata"]["name"] = namespace
        elif obj["metadata"].get("namespace"):
            obj["metadata"]["namespace"] = namespace
    return moved


def isvc_only(cluster, namespace: str, annotations: dict[str, str] | None = None) -> list[dict]:
    """The staging tree's Namespace, ServiceAccount, ServingRuntime, InferenceService and the credentials the
    storage initializer needs, in ``namespace``."""
    objects = in_namespace(cluster.tree("overlays/staging"), namespace)
    kept = [o for o in objects if o["kind"] in ("Namespace", "ServiceAccount", "ServingRuntime", "InferenceService")]
    for obj in kept:
        if obj["kind"] == "InferenceService" and annotations:
            obj["metadata"].setdefault("annotations", {}).update(annotations)
    return kept


def secret_for(cluster, namespace: str) -> dict:
    from gitops.manifests import model_store, store_secret

    return store_secret(model_store(cluster.root, "staging"), namespace, "key", "secret")


def bring(cluster, objects: list[dict]) -> None:
    namespace = next(o for o in objects if o["kind"] == "Namespace")
    cluster.plane.apply([namespace])
    cluster.plane.apply([secret_for(cluster, namespace["metadata"]["name"])])
    cluster.sync([o for o in objects if o["kind"] != "Namespace"], wait=False)


# --- mutations only the real thing catches ---------------------------------------------------------------------


def test_a_policy_without_the_agent_port_blocks_the_page(cluster, nca):
    """KServe points the predictor's Service at its agent (9081) when a logger is set (service_reconciler.go):
    a policy admitting the model server's 8080 instead leaves the page without a predictor (the report reads
    each pod's 8080 directly, through the headless Service mpg-predictor-pods, and is not affected)."""
    original = [o for o in cluster.tree("overlays/staging") if o["kind"] == "NetworkPolicy"]
    broken = copy.deepcopy(original)
    for policy in broken:
        for rule in policy["spec"].get("ingress", []) + policy["spec"].get("egress", []):
            for port in rule.get("ports") or []:
                if port.get("port") == 9081:
                    port["port"] = 8080
    try:
        cluster.plane.apply(broken)
        verdict = flows(cluster, "mpg-staging", SERVING_FLOWS, cluster.tree("overlays/staging"), nca)[0]
    finally:
        cluster.plane.apply(original)
    assert not verdict.ok
    assert "blocked: client -> predictor" in verdict.detail and "blocked: report job" not in verdict.detail


def test_a_deployment_mode_annotation_stops_every_update_on_0_16_only(cluster):
    """KServe 0.16's webhook refuses an update whose serving.kserve.io/deploymentMode differs from the mode its
    controller recorded ("Standard"): inference_service_validation.go validateDeploymentMode, kserve#5025 (fixed
    in 0.17). 0.15 records "RawDeployment" itself; 0.20 compares the parsed modes. Hence no annotation in git."""
    namespace = f"mut-mode-{short(cluster.release).replace('.', '-')}"
    objects = isvc_only(cluster, namespace, {"serving.kserve.io/deploymentMode": "RawDeployment"})
    bring(cluster, objects)
    wait_until(
        lambda: (cluster.plane.get("inferenceservice", "mpg", namespace) or {}).get("status", {}).get("deploymentMode"),
        60,
        "the controller records the mode",
    )
    if short(cluster.release) == "0.16":
        with pytest.raises(SyncError, match="deploymentMode cannot be changed from 'Standard' to 'RawDeployment'"):
            cluster.sync(with_model(objects, NEW_MODEL)[1:], wait=False)
    else:
        cluster.sync(with_model(objects, NEW_MODEL)[1:], wait=False)
    cluster.plane.kubectl("delete", "namespace", namespace, "--wait=false")


def test_a_storage_initializer_without_security_context_is_refused_under_restricted(cluster):
    """The pod webhook gives the storage initializer the ClusterStorageContainer's securityContext and nothing
    else (storage_initializer_injector.go): without the platform configuration, Pod Security refuses the pod."""
    platform = [d for d in cluster.platform_documents() if d["kind"] == "ClusterStorageContainer"]
    bare = copy.deepcopy(platform)
    del bare[0]["spec"]["container"]["securityContext"]
    namespace = f"mut-init-{short(cluster.release).replace('.', '-')}"
    try:
        cluster.plane.apply(bare, manager="mpg-mlops-platform", force=True)  # what the release YAML alone leaves
        bring(cluster, isvc_only(cluster, namespace))
        refused = wait_until(lambda: cluster.failed_creates(namespace), 60, "the ReplicaSet reports FailedCreate")
    finally:
        cluster.plane.apply(platform, manager="mpg-mlops-platform", force=True)
    assert not admitted(cluster, namespace).ok
    assert any('violates PodSecurity "restricted' in r and "storage-initializer" in r for r in refused), refused
    cluster.plane.kubectl("delete", "namespace", namespace, "--wait=false")


def test_a_privileged_container_is_refused_under_restricted(cluster):
    namespace = f"mut-priv-{short(cluster.release).replace('.', '-')}"
    objects = in_namespace(cluster.tree("overlays/staging"), namespace)
    client = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "mpg-client")
    # privileged implies privilege escalation: the API server refuses the pair with allowPrivilegeEscalation false
    client["spec"]["template"]["spec"]["containers"][0]["securityContext"].update(
        privileged=True, allowPrivilegeEscalation=True
    )
    cluster.plane.apply([next(o for o in objects if o["kind"] == "Namespace")])
    warnings = cluster.plane.apply([client])
    assert any("would violate PodSecurity" in w and "privileged" in w for w in warnings), warnings
    refused = wait_until(lambda: cluster.failed_creates(namespace), 60, "the ReplicaSet reports FailedCreate")
    assert not admitted(cluster, namespace).ok and "privileged" in refused[0]
    cluster.plane.kubectl("delete", "namespace", namespace, "--wait=false")


def test_a_service_selector_typo_leaves_it_without_endpoints(cluster):
    original = next(o for o in cluster.tree("overlays/staging") if o["kind"] == "Service")
    typo = copy.deepcopy(original)
    typo["spec"]["selector"] = {"app.kubernetes.io/name": original["spec"]["selector"]["app.kubernetes.io/name"] + "s"}
    try:
        cluster.plane.apply([typo])
        verdict = wait_until(
            lambda: None if (v := endpoints(cluster, "mpg-staging")).ok else v, 30, "the EndpointSlice empties"
        )
    finally:
        cluster.plane.apply([original])
    assert f"Service/{original['metadata']['name']} selects no ready Pod" in verdict.detail


def test_an_inference_service_field_the_crd_does_not_know_is_refused(cluster):
    """Server-side apply builds a typed patch from the release's own CRD schema: a field it does not declare is
    refused before any webhook runs."""
    isvc = copy.deepcopy(next(o for o in cluster.tree("overlays/staging") if o["kind"] == "InferenceService"))
    isvc["spec"]["predictor"]["model"]["colour"] = "red"
    with pytest.raises(ApplyRefusedError, match=r"spec.predictor.model.colour: field not declared in schema"):
        cluster.plane.apply([isvc], dry_run=True)
