"""The fast pre-checks of the rendered trees, without a cluster: the network flows by ``gitops/cluster.py``
(tests/cluster checks the same flows over the Pods the real controllers make, by network-config-analyzer, and
that the two agree), the sync waves, pruning, Pod Security labels, quotas and the KFP switches.

What KServe creates and admits is no longer modelled here: tests/cluster runs each supported release's own
controller and webhooks.
"""

from __future__ import annotations

import copy

import pytest

from gitops.cluster import KFP_FLOWS, KFP_MULTI_USER_FLOWS, SERVING_FLOWS, reachability
from gitops.manifests import render_tree
from infra.manifests import KSERVE_VERSIONS, object_problems
from tests.conftest import ROOT

ENVIRONMENTS = ("staging", "production")


@pytest.fixture(scope="module")
def trees(root) -> dict[str, list[dict]]:
    return {name: render_tree(root, name) for name in ("overlays/staging", "overlays/production", "base/kfp")}


def named(objects, kind, name):
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


# --- NetworkPolicies over every pod: each flow the product needs, and nothing else ----------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
@pytest.mark.parametrize("flow", SERVING_FLOWS, ids=lambda f: f.what)
def test_every_flow_of_the_loop_is_allowed(trees, env, flow):
    result = reachability(trees[f"overlays/{env}"], [flow], f"mpg-{env}")
    assert result.needed[flow], f"{flow.what}: no pod answers {flow.destination}"
    assert not result.blocked, f"{flow.what}: blocked {[h for h in result.needed[flow] if not result.allowed[h]]}"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_nothing_but_those_flows_is_allowed(trees, env):
    result = reachability(trees[f"overlays/{env}"], SERVING_FLOWS, f"mpg-{env}")
    assert result.unneeded == []


def test_the_nightly_submitter_reaches_the_kfp_api_and_dns_only(trees):
    result = reachability(trees["base/kfp"], KFP_FLOWS, "kubeflow")
    assert not result.blocked and result.unneeded == []


DNS_FORMS = {  # component -> the DNS pod or address the flows must reach, and on which port
    "dns-node-local": ("DNS at an address", 53),
    "dns-openshift": ("openshift-dns", 5353),
}


def with_component(root, tmp_path, env: str, component: str) -> list[dict]:
    """``env``'s overlay with ``component`` added, as a platform engineer would add it (one line)."""
    import shutil

    shutil.copytree(root / "k8s", tmp_path / "k8s")
    kustomization = tmp_path / "k8s" / "overlays" / env / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text() + f"components:\n  - ../../components/{component}\n")
    return render_tree(tmp_path, f"overlays/{env}")


@pytest.mark.parametrize("component", DNS_FORMS)
@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_pod_resolves_names_with_the_dns_form_an_overlay_names(root, tmp_path, env, component):
    """The platform review: with NodeLocal DNSCache (hostNetwork, 169.254.20.10) or OpenShift (openshift-dns, 5353)
    every flow died at its name lookup, and the DNS peer was written into four policies (five with the
    submitter's). Now one policy, mpg-dns, says where DNS is, and a component names another form."""
    objects = with_component(root, tmp_path, env, component)
    name, port = DNS_FORMS[component]
    result = reachability(objects, SERVING_FLOWS, f"mpg-{env}")
    assert not result.blocked and result.unneeded == []
    dns = [hop for flow, hops in result.needed.items() if flow.what.endswith("-> DNS") for hop in hops]
    assert {(hop[1], hop[2]) for hop in dns} == {(name, port)} and len(dns) == 4 * 2, "4 workloads, UDP and TCP"
    default = reachability(trees_default := render_tree(root, f"overlays/{env}"), SERVING_FLOWS, f"mpg-{env}")
    assert {h[1] for f, hops in default.needed.items() if f.what.endswith("-> DNS") for h in hops} == {"kube-dns"}
    assert trees_default != objects


@pytest.mark.parametrize("component", DNS_FORMS)
def test_the_nightly_submitter_follows_the_same_dns_component(root, tmp_path, component):
    import shutil

    shutil.copytree(root / "k8s", tmp_path / "k8s")
    kustomization = tmp_path / "k8s" / "base" / "kfp" / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text() + f"components:\n  - ../../components/{component}\n")
    result = reachability(render_tree(tmp_path, "base/kfp"), KFP_FLOWS, "kubeflow")
    assert not result.blocked and result.unneeded == []


def test_one_policy_says_where_dns_is(trees):
    """Every other policy leaves DNS to mpg-dns: a DNS peer written elsewhere would be missed by a component."""
    for tree in trees.values():
        for policy in (o for o in tree if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] != "mpg-dns"):
            text = str(policy["spec"].get("egress"))
            assert "kube-dns" not in text and "53" not in text.replace("5432", ""), policy["metadata"]["name"]


def test_a_fence_on_the_model_servers_port_blocks_the_page_as_kserve_routes_it(trees):
    """The defect this model exists for: allowing 8080 (the container port) where traffic arrives through
    the Service, on the agent's 9081, leaves the page and the smoke check without a predictor."""
    objects = copy.deepcopy(trees["overlays/staging"])
    for policy in (o for o in objects if o["kind"] == "NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []) + policy["spec"].get("egress", []):
            for port in rule.get("ports") or []:
                if port["port"] == 9081:
                    port["port"] = 8080
    blocked = {f.what for f in reachability(objects, SERVING_FLOWS, "mpg-staging").blocked}
    assert "client -> predictor (predict, infer, metadata, readiness)" in blocked


# --- every supported KServe release: schema and admission ---------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_serving_objects_are_valid_for_every_supported_kserve(root, trees, env):
    kserve = [o for o in trees[f"overlays/{env}"] if o["apiVersion"].startswith("serving.kserve.io/")]
    assert {o["kind"] for o in kserve} == {"InferenceService", "ServingRuntime"}
    for obj in kserve:
        assert object_problems(obj, root / "k8s" / "schemas") == []


def test_a_field_only_kserve_016_knows_is_refused_for_015_only(root, trees):
    isvc = copy.deepcopy(named(trees["overlays/staging"], "InferenceService", "mpg"))
    isvc["spec"]["predictor"]["storageUris"] = [{"uri": "s3://mpg-mlops/x/", "mountPath": "/mnt/x"}]
    problems = object_problems(isvc, root / "k8s" / "schemas")
    assert problems and all(message.startswith("KServe 0.15: ") for _, message in problems)
    isvc["spec"]["predictor"]["colour"] = "red"
    labels = {message.split(":")[0] for _, message in object_problems(isvc, root / "k8s" / "schemas")}
    assert labels == {f"KServe {v}" for v in KSERVE_VERSIONS}


# --- Argo CD: sync order, pruning, projects ------------------------------------------------------------------


def wave(obj) -> int:
    return int((obj["metadata"].get("annotations") or {}).get("argocd.argoproj.io/sync-wave", "0"))


def sync_options(obj) -> set[str]:
    return set(
        filter(None, (obj["metadata"].get("annotations") or {}).get("argocd.argoproj.io/sync-options", "").split(","))
    )


#: Objects whose health does not depend on serving: the monitor needs its Secret and PostgreSQL, an Ingress is
#: healthy only with a load-balancer address, the prometheus-operator kinds need its CRDs.
MAY_STAY_UNHEALTHY = {
    ("Deployment", "mpg-monitor"),
    ("Ingress", "mpg-client"),
    ("CronJob", "mpg-monitor-report"),
    ("PodMonitor", "mpg-predictor"),
    ("PodMonitor", "mpg-monitor"),
    ("PrometheusRule", "mpg-model"),
}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_argo_cd_syncs_the_model_before_anything_that_may_stay_unhealthy(trees, env):
    """Argo CD applies one sync wave at a time and starts the next only once every object of the previous
    one is healthy (argo-cd docs/user-guide/sync-waves.md; gitops-engine pkg/sync/sync_context.go): an
    object that may stay unhealthy in a wave at or before the InferenceService's holds every model change."""
    objects = trees[f"overlays/{env}"]
    model = wave(named(objects, "InferenceService", "mpg"))
    for kind, name in MAY_STAY_UNHEALTHY:
        assert wave(named(objects, kind, name)) > model, f"{kind}/{name} would hold the model back"
    namespace = named(objects, "Namespace", f"mpg-{env}")
    assert all(wave(o) > wave(namespace) for o in objects if o is not namespace), "the namespace first"
    fences = [o for o in objects if o["kind"] == "NetworkPolicy"]
    workloads = [o for o in objects if o["kind"] in ("Deployment", "CronJob", "InferenceService")]
    assert max(map(wave, fences)) < min(map(wave, workloads)), "fences before what they fence"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_operator_kinds_do_not_fail_the_sync_where_their_crds_are_missing(trees, env):
    """Argo CD's dry run fails a sync on a kind the cluster does not know, unless SkipDryRunOnMissingResource
    (argo-cd docs/user-guide/sync-options.md)."""
    for obj in trees[f"overlays/{env}"]:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            assert "SkipDryRunOnMissingResource=true" in sync_options(obj), obj["metadata"]["name"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_a_namespace_is_never_pruned_or_deleted_with_its_application(trees, env):
    """Its Secrets are made by hand: pruning asks for a confirmation (Prune=confirm, Argo CD >= 2.8) and
    deleting the Application leaves it (Delete=false) (argo-cd docs/user-guide/sync-options.md)."""
    namespace = named(trees[f"overlays/{env}"], "Namespace", f"mpg-{env}")
    assert {"Prune=confirm", "Delete=false"} <= sync_options(namespace)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_namespace_is_restricted_and_bounded(trees, env):
    """Pod Security Admission enforces the namespace label pod-security.kubernetes.io/enforce; a ResourceQuota
    bounds what the environment takes, a LimitRange gives defaults to a container that names none."""
    objects = trees[f"overlays/{env}"]
    labels = named(objects, "Namespace", f"mpg-{env}")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {o["kind"] for o in objects} >= {"ResourceQuota", "LimitRange", "PodDisruptionBudget"}
    quota = named(objects, "ResourceQuota", "mpg-environment")["spec"]["hard"]
    isvc = named(objects, "InferenceService", "mpg")["spec"]["predictor"]
    pods = isvc["maxReplicas"] + isvc["deploymentStrategy"]["rollingUpdate"]["maxSurge"]
    assert int(quota["pods"]) >= pods + 5, "the predictors at their most, surging, plus clients, monitors, report"


# --- Kubeflow Pipelines: standalone by default, multi-user as one switch -----------------------------------


def submitter(objects):
    cron = named(objects, "CronJob", "mpg-production-nightly")["spec"]["jobTemplate"]["spec"]["template"]
    return cron, cron["spec"]["containers"][0]["args"]


def test_standalone_kfp_runs_the_submitter_without_a_sidecar_or_a_token(trees):
    """A sidecar keeps a Job's pod alive after its container exits (istio/istio#11659); standalone KFP has no
    mesh and no authentication, so the submitter has neither. It submits the compiled pipeline Argo CD synced
    from git, mounted from a ConfigMap: no clone (its policy allows the KFP API and DNS only), nothing written
    (its root filesystem is read-only), no git token."""
    template, args = submitter(trees["base/kfp"])
    assert "sidecar.istio.io/inject" not in (template["metadata"].get("annotations") or {})
    assert not [a for a in args if a.startswith(("--token-file", "--namespace"))]
    assert "--pipeline-file=/etc/mpg/pipeline/production-pipeline.yaml" in args, "git's pipeline, not the image's"
    mount = template["spec"]["containers"][0]["volumeMounts"][0]
    volume = next(v for v in template["spec"]["volumes"] if v["name"] == mount["name"])
    config = named(trees["base/kfp"], "ConfigMap", volume["configMap"]["name"])
    assert mount["mountPath"] == "/etc/mpg/pipeline" and mount["readOnly"]
    assert config["data"]["production-pipeline.yaml"] == (ROOT / "pipelines/production-pipeline.yaml").read_text()


def test_multi_user_kfp_names_the_profile_joins_the_mesh_and_stops_its_sidecar(root, trees):
    """Multi-user KFP: every call names the profile namespace (kubeflow/pipelines#12088); the API server takes
    mTLS only (Istio STRICT), so the pod joins the mesh, reaches istiod, and stops the sidecar when done; its
    ServiceAccount may create runs there (ClusterRole kubeflow-pipelines-edit); the Secrets live there."""
    objects = render_tree(root, "overlays/kfp-multi-user")
    template, args = submitter(objects)
    namespace = named(objects, "CronJob", "mpg-production-nightly")["metadata"]["namespace"]
    assert namespace != "kubeflow" and f"--namespace={namespace}" in args
    assert template["metadata"]["annotations"]["sidecar.istio.io/inject"] == "true"
    assert "--stop-istio-sidecar" in args and any(a.startswith("--token-file=") for a in args)
    binding = named(objects, "RoleBinding", "mpg-pipeline-submitter")
    assert binding["roleRef"]["name"] == "kubeflow-pipelines-edit"
    assert binding["subjects"][0]["name"] == template["spec"]["serviceAccountName"]
    result = reachability(objects, KFP_MULTI_USER_FLOWS, namespace)
    assert not result.blocked and result.unneeded == []


# --- the model store: one endpoint per overlay -------------------------------------------------------------


def test_the_training_namespace_uses_the_model_store_production_names(root, trees):
    """The pipeline publishes where production's storage initializer reads (k8s/base/kfp and the overlay)."""
    from gitops.manifests import model_store

    kfp = named(trees["base/kfp"], "ConfigMap", "mpg-model-store")["data"]["MLOPS_S3_ENDPOINT_URL"]
    assert kfp == model_store(root, "production").url


@pytest.mark.parametrize(
    ("url", "https", "verify"), [("http://store:9000", "0", "0"), ("https://s3.example.com", "1", "1")]
)
def test_the_storage_initializers_secret_says_http_or_https_explicitly(url, https, verify):
    """KServe's storage initializer takes the endpoint from the annotations of the Secret its ServiceAccount
    lists and defaults to https (kserve pkg/credentials/s3/s3_secret.go): both are always written."""
    from gitops.manifests import ModelStore, store_secret

    secret = store_secret(ModelStore(url, "store", 9000, True), "mpg-staging", "id", "key")
    annotations = secret["metadata"]["annotations"]
    assert annotations["serving.kserve.io/s3-usehttps"] == https
    assert annotations["serving.kserve.io/s3-verifyssl"] == verify
    assert annotations["serving.kserve.io/s3-endpoint"] == url.split("://")[1] + ("" if ":" in url[7:] else ":443")
