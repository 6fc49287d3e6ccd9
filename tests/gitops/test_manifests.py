"""Manifest policy: every tree renders and validates clean, and each deliberately broken variant
fails with a finding naming the tree, the object and the field."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from gitops.manifests import TREES, validate_all
from tests.conftest import one_line_error, run_mlops


def test_every_tree_renders_and_passes_schema_and_policy(root):
    rendered, found = validate_all(root)
    assert found == []
    assert set(rendered) == set(TREES)
    kinds = {tree: {o["kind"] for o in objects} for tree, objects in rendered.items()}
    assert {"InferenceService", "ServingRuntime", "NetworkPolicy", "Namespace", "Ingress"} <= kinds["overlays/staging"]
    assert {"Application", "AppProject"} == kinds["argocd"]
    assert "NetworkPolicy" in kinds["base/kfp"]


@pytest.fixture
def project(tmp_path, root) -> Path:
    """A copy of the manifests a test may break."""
    shutil.copytree(root / "k8s", tmp_path / "k8s")
    return tmp_path


def edit_yaml(path: Path, change, index: int = 0) -> None:
    """Apply ``change`` to the ``index``-th document of a YAML file (comments are lost, which is fine here)."""
    documents = list(yaml.safe_load_all(path.read_text()))
    change(documents[index])
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))


def image(kustomization: dict, name: str) -> dict:
    """The ``images:`` entry of a kustomization for ``name``."""
    return next(entry for entry in kustomization["images"] if entry["name"] == name)


def retag(entry: dict, tag: str) -> None:
    """An image by tag instead of digest."""
    entry.pop("digest")
    entry["newTag"] = tag


def base(project: Path, name: str) -> Path:
    return project / "k8s" / "base" / name


def append_document(path: Path, document: str) -> None:
    """Add one more YAML document to a manifest file."""
    path.write_text(path.read_text() + "---\n" + document)


def rewrite_model_file(project: Path, env: str, pattern: str, replacement: str) -> None:
    """Edit an overlay's model URI as a merge request would: a regex substitution in its model.yaml."""
    model = project / "k8s/overlays" / env / "model.yaml"
    model.write_text(re.sub(pattern, replacement, model.read_text()))


def _client_pod(doc):
    return doc["spec"]["template"]["spec"]


def _client_container(doc):
    return _client_pod(doc)["containers"][0]


BROKEN = {
    "unknown field": (
        lambda p: edit_yaml(base(p, "client/deployment.yaml"), lambda d: _client_pod(d).update(colour="blue")),
        "overlays/staging: Deployment/mpg-client: spec.template.spec: Additional properties are not allowed",
    ),
    "missing limits": (
        lambda p: edit_yaml(
            base(p, "client/deployment.yaml"), lambda d: _client_container(d)["resources"].pop("limits")
        ),
        "Deployment/mpg-client: spec.template.spec.containers[nginx].resources.limits.cpu: must be set",
    ),
    "latest tag": (
        lambda p: edit_yaml(
            base(p, "kustomization.yaml"),
            lambda d: retag(image(d, "nginx-unprivileged"), "latest"),
        ),
        "Deployment/mpg-client: spec.template.spec.containers[nginx].image:"
        " 'docker.io/nginxinc/nginx-unprivileged:latest' must be pinned by digest",
    ),
    "version tag, no digest": (
        lambda p: edit_yaml(
            base(p, "kustomization.yaml"),
            lambda d: retag(image(d, "mpg-mlops-serving"), "0.1.0"),
        ),
        "ServingRuntime/mpg-sklearn: spec.containers[kserve-container].image:"
        " 'registry.gitlab.com/mpg-mlops/mpg-mlops/serving:0.1.0' must be pinned by digest",
    ),
    "wildcard RBAC": (
        lambda p: append_document(
            base(p, "kfp/rbac.yaml"),
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: too-much\n"
            "rules:\n  - apiGroups: ['']\n    resources: [pods]\n    verbs: ['*']\n",
        ),
        "base/kfp: Role/too-much: rules[0].verbs: must not be a wildcard",
    ),
    "secret with data": (
        lambda p: append_document(
            base(p, "model-reader.yaml"),
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: mpg-s3-credentials\n"
            "stringData:\n  AWS_SECRET_ACCESS_KEY: hunter2\n",
        ),
        "Secret/mpg-s3-credentials: stringData: a Secret with data must not be in git",
    ),
    "mutable storageUri": (
        lambda p: rewrite_model_file(p, "staging", r"models/mpg/[0-9a-f]{64}/", "models/mpg/latest/"),
        "overlays/staging: InferenceService/mpg: spec.predictor.model.storageUri: must be an immutable model URI",
    ),
    "no default deny": (
        lambda p: edit_yaml(
            base(p, "network-policies.yaml"), lambda d: d["spec"].update(podSelector={"matchLabels": {"x": "y"}})
        ),
        "overlays/staging: Namespace/mpg-staging: metadata.name: the namespace has no default-deny NetworkPolicy",
    ),
    "workload not fenced": (
        lambda p: edit_yaml(base(p, "network-policies.yaml"), lambda d: d["spec"].update(policyTypes=["Ingress"]), 2),
        "overlays/staging: Deployment/mpg-client: pod labels: no NetworkPolicy selects these pods"
        " for both Ingress and Egress",
    ),
    "token automount": (
        lambda p: edit_yaml(base(p, "model-reader.yaml"), lambda d: d.pop("automountServiceAccountToken")),
        "ServiceAccount/mpg-model-reader: automountServiceAccountToken: must be false",
    ),
    "missing seccomp": (
        lambda p: edit_yaml(
            base(p, "serving-runtime.yaml"),
            lambda d: d["spec"]["containers"][0]["securityContext"].pop("seccompProfile"),
        ),
        "ServingRuntime/mpg-sklearn:"
        " spec.containers[kserve-container].securityContext.seccompProfile.type: must be RuntimeDefault",
    ),
    "root allowed": (
        lambda p: edit_yaml(
            base(p, "serving-runtime.yaml"), lambda d: d["spec"]["containers"][0]["securityContext"].pop("runAsNonRoot")
        ),
        "ServingRuntime/mpg-sklearn: spec.containers[kserve-container].securityContext.runAsNonRoot: must be true",
    ),
    "writable root filesystem": (
        lambda p: edit_yaml(
            base(p, "client/deployment.yaml"),
            lambda d: _client_container(d)["securityContext"].update(readOnlyRootFilesystem=False),
        ),
        "Deployment/mpg-client:"
        " spec.template.spec.containers[nginx].securityContext.readOnlyRootFilesystem: must be true",
    ),
    "capabilities kept": (
        lambda p: edit_yaml(
            base(p, "client/deployment.yaml"), lambda d: _client_container(d)["securityContext"].pop("capabilities")
        ),
        "Deployment/mpg-client:"
        " spec.template.spec.containers[nginx].securityContext.capabilities.drop: must include ALL",
    ),
    "wrong Argo CD destination": (
        lambda p: edit_yaml(
            p / "k8s/argocd/applications.yaml", lambda d: d["spec"]["destination"].update(namespace="default"), 1
        ),
        "argocd: Application/mpg-staging: spec.destination: https://kubernetes.default.svc default"
        " is not a destination",
    ),
    "Argo CD project unknown": (
        lambda p: edit_yaml(p / "k8s/argocd/applications.yaml", lambda d: d["spec"].update(project="default"), 3),
        "argocd: Application/mpg-training: spec.project: names no AppProject of this tree",
    ),
    "cluster-scoped kind allowed": (
        lambda p: edit_yaml(
            p / "k8s/argocd/projects.yaml",
            lambda d: d["spec"]["clusterResourceWhitelist"].append(
                {"group": "rbac.authorization.k8s.io", "kind": "ClusterRole"}
            ),
        ),
        "argocd: AppProject/mpg-mlops: spec.clusterResourceWhitelist[1]: only Namespace may be cluster-scoped",
    ),
    "token over plain http outside the mesh": (
        lambda p: edit_yaml(
            base(p, "kfp/recurring-run.yaml"),
            lambda d: d["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"].append(
                "--token-file=/var/run/secrets/kubeflow/pipelines/token"
            ),
        ),
        "base/kfp: CronJob/mpg-production-nightly:"
        " spec.jobTemplate.spec.template.spec.containers[submit].args: a bearer token over plain http",
    ),
    # The review's edits that passed before (issue 16): each must be a finding now.
    "privileged container": (
        lambda p: edit_yaml(
            base(p, "client/deployment.yaml"), lambda d: _client_container(d)["securityContext"].update(privileged=True)
        ),
        "Deployment/mpg-client: spec.template.spec.containers[nginx].securityContext.privileged: must not be true",
    ),
    "SYS_ADMIN added beside drop ALL": (
        lambda p: edit_yaml(
            base(p, "client/deployment.yaml"),
            lambda d: _client_container(d)["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
        ),
        "spec.template.spec.containers[nginx].securityContext.capabilities.add: adds SYS_ADMIN",
    ),
    "hostPath /": (
        lambda p: edit_yaml(
            base(p, "client/deployment.yaml"),
            lambda d: _client_pod(d)["volumes"].append({"name": "host", "hostPath": {"path": "/"}}),
        ),
        "Deployment/mpg-client: spec.template.spec.volumes[host].hostPath: a host path mounts the node's files",
    ),
    **{
        f"{field}": (
            lambda p, field=field: edit_yaml(
                base(p, "client/deployment.yaml"), lambda d: _client_pod(d).update({field: True})
            ),
            f"Deployment/mpg-client: spec.template.spec.{field}: must not be true",
        )
        for field in ("hostNetwork", "hostPID", "hostIPC")
    },
    "hostPort": (
        lambda p: edit_yaml(
            base(p, "client/deployment.yaml"), lambda d: _client_container(d)["ports"][0].update(hostPort=80)
        ),
        "Deployment/mpg-client: spec.template.spec.containers[nginx].ports.hostPort: 80: a host port exposes the node",
    ),
    "foreign registry": (
        lambda p: edit_yaml(
            base(p, "kustomization.yaml"),
            lambda d: image(d, "nginx-unprivileged").update(newName="docker.io/evil/nginx"),
        ),
        "Deployment/mpg-client: spec.template.spec.containers[nginx].image: 'docker.io/evil/nginx@sha256:",
    ),
    **{
        f"Service {kind}": (
            lambda p, kind=kind: edit_yaml(base(p, "client/service.yaml"), lambda d: d["spec"].update(type=kind)),
            f"overlays/staging: Service/mpg-client: spec.type: {kind} exposes the pods outside the cluster",
        )
        for kind in ("LoadBalancer", "NodePort")
    },
    "ClusterRole in an overlay": (
        lambda p: append_document(
            base(p, "model-reader.yaml"),
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: reader\n"
            "rules:\n  - apiGroups: ['']\n    resources: [secrets]\n    verbs: [get]\n",
        ),
        "overlays/staging: ClusterRole/reader: kind: no ClusterRole in this repository",
    ),
    "RoleBinding to cluster-admin": (
        lambda p: append_document(
            base(p, "model-reader.yaml"),
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: root\n"
            "roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: cluster-admin\n"
            "subjects:\n  - kind: ServiceAccount\n    name: mpg-model-reader\n",
        ),
        "overlays/staging: RoleBinding/root: roleRef.name: 'cluster-admin' grants far more",
    ),
    "NetworkPolicy allowing all to the monitor": (
        lambda p: append_document(
            base(p, "network-policies.yaml"),
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: monitor-open\nspec:\n"
            "  podSelector:\n    matchLabels:\n      app.kubernetes.io/name: mpg-monitor\n"
            "  policyTypes: [Ingress]\n  ingress:\n    - {}\n",
        ),
        "overlays/staging: NetworkPolicy/monitor-open: spec.ingress[0].from: admits traffic from everywhere",
    ),
    "Ingress without TLS": (
        lambda p: edit_yaml(p / "k8s/overlays/staging/host.yaml", lambda d: d["spec"].pop("tls")),
        "overlays/staging: Ingress/mpg-client: spec.rules[0].host: 'mpg.staging.example.com' is served without TLS",
    ),
    "AppProject sourceRepos *": (
        lambda p: edit_yaml(p / "k8s/argocd/projects.yaml", lambda d: d["spec"]["sourceRepos"].append("*")),
        "argocd: AppProject/mpg-mlops: spec.sourceRepos[1]: must not be a wildcard",
    ),
    "AppProject destinations *": (
        lambda p: edit_yaml(
            p / "k8s/argocd/projects.yaml", lambda d: d["spec"].update(destinations=[{"server": "*", "namespace": "*"}])
        ),
        "argocd: AppProject/mpg-mlops: spec.destinations[0]: must not be a wildcard",
    ),
    "AppProject any namespaced kind": (
        lambda p: edit_yaml(
            p / "k8s/argocd/projects.yaml",
            lambda d: d["spec"].update(namespaceResourceWhitelist=[{"group": "*", "kind": "*"}]),
        ),
        "argocd: AppProject/mpg-mlops: spec.namespaceResourceWhitelist[0]: must not be a wildcard",
    ),
    "InferenceService model container privileged": (
        lambda p: edit_yaml(
            base(p, "inference-service.yaml"),
            lambda d: d["spec"]["predictor"]["model"].update(securityContext={"privileged": True}),
        ),
        "overlays/staging: InferenceService/mpg: spec.predictor.model.securityContext.privileged: must not be true",
    ),
    "InferenceService extra container from anywhere": (
        lambda p: edit_yaml(
            base(p, "inference-service.yaml"),
            lambda d: d["spec"]["predictor"].update(containers=[{"name": "sidecar", "image": "docker.io/evil/x:1"}]),
        ),
        "InferenceService/mpg: spec.predictor.containers[sidecar].image: 'docker.io/evil/x:1' must be pinned",
    ),
    "ServingRuntime on the host network": (
        lambda p: edit_yaml(base(p, "serving-runtime.yaml"), lambda d: d["spec"].update(hostIPC=True)),
        "ServingRuntime/mpg-sklearn: spec.hostIPC: must not be true",
    ),
    "storageUri in another bucket": (
        lambda p: rewrite_model_file(p, "staging", r"s3://mpg-mlops/models/mpg/", "s3://mlpipeline/anyone/"),
        "overlays/staging: InferenceService/mpg: spec.predictor.model.storageUri:"
        " must be a model of this project's repository s3://mpg-mlops/models/mpg/",
    ),
    "storageUri under another prefix of the bucket": (
        lambda p: rewrite_model_file(p, "production", r"s3://mpg-mlops/models/mpg/", "s3://mpg-mlops/uploads/"),
        "overlays/production: InferenceService/mpg: spec.predictor.model.storageUri: must be a model of this project",
    ),
    "model server command replaced": (
        lambda p: edit_yaml(
            base(p, "inference-service.yaml"),
            lambda d: d["spec"]["predictor"]["model"].update(command=["python", "-c", "import os; os.system('sh')"]),
        ),
        "InferenceService/mpg: spec.predictor.model.command: must not be set",
    ),
    "model server args replaced": (
        lambda p: edit_yaml(
            base(p, "inference-service.yaml"), lambda d: d["spec"]["predictor"]["model"].update(args=["--help"])
        ),
        "InferenceService/mpg: spec.predictor.model.args: must not be set",
    ),
    "ExternalName Service": (
        lambda p: edit_yaml(
            base(p, "client/service.yaml"),
            lambda d: d["spec"].update(type="ExternalName", externalName="attacker.example.com"),
        ),
        "Service/mpg-client: spec.type: ExternalName sends this name's traffic to a host outside the fence",
    ),
    "Service externalIPs": (
        lambda p: edit_yaml(base(p, "client/service.yaml"), lambda d: d["spec"].update(externalIPs=["203.0.113.7"])),
        "Service/mpg-client: spec.externalIPs: must not be set",
    ),
    "AppProject role with a wildcard policy": (
        lambda p: edit_yaml(
            p / "k8s/argocd/projects.yaml",
            lambda d: d["spec"].update(
                roles=[{"name": "ci", "policies": ["p, proj:mpg-mlops:ci, applications, *, mpg-mlops/*, allow"]}]
            ),
        ),
        "argocd: AppProject/mpg-mlops: spec.roles[0].policies[0]: must not be a wildcard",
    ),
    "AppProject open to every source namespace": (
        lambda p: edit_yaml(p / "k8s/argocd/projects.yaml", lambda d: d["spec"].update(sourceNamespaces=["*"])),
        "argocd: AppProject/mpg-mlops: spec.sourceNamespaces[0]: must not be a wildcard",
    ),
    "Application adding a foreign source": (
        lambda p: edit_yaml(
            p / "k8s/argocd/applications.yaml",
            lambda d: d["spec"].update(
                sources=[
                    {"repoURL": "https://gitlab.example.com/attacker/x.git", "path": ".", "targetRevision": "HEAD"}
                ]
            ),
            1,
        ),
        "argocd: Application/mpg-staging: spec.sources[0].repoURL: 'https://gitlab.example.com/attacker/x.git'"
        " is not a source repository of AppProject/mpg-mlops",
    ),
    "predictor pod may be root": (
        lambda p: edit_yaml(base(p, "inference-service.yaml"), lambda d: d["spec"]["predictor"].pop("securityContext")),
        "InferenceService/mpg: spec.predictor.securityContext.runAsNonRoot: must be true",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN), ids=list(BROKEN))
def test_a_broken_variant_fails_naming_tree_object_and_field(project, case):
    breaks, expected = BROKEN[case]
    breaks(project)
    _, found = validate_all(project)
    messages = [str(f) for f in found]
    assert any(expected in m for m in messages), "\n".join(messages) or "no finding"


def test_argo_cd_syncs_this_projects_repository_not_a_fork(project):
    """settings.yaml names the repository for every Application and AppProject: pointed at a fork, the
    AppProject's own check passes (both moved), so the policy compares with the project's URL, as CI gives it."""
    ours = "https://gitlab.example.com/mlops/mpg-mlops.git"
    assert validate_all(project, repo_url="git@gitlab.example.com:mlops/MPG-mlops")[1] == [], "one repository"
    settings = project / "k8s/argocd/settings.yaml"
    settings.write_text(settings.read_text().replace(ours, "https://gitlab.example.com/attacker/mpg-mlops.git"))
    assert validate_all(project)[1] == [], "without the project's URL, nothing to compare with"
    messages = [str(f) for f in validate_all(project, repo_url=ours)[1]]
    assert any("Application/mpg-staging: spec.source.repoURL:" in m and "a fork?" in m for m in messages), messages
    assert any("AppProject/mpg-mlops: spec.sourceRepos[0]" in m for m in messages), messages
    shutil.copy(Path(__file__).parents[2] / "params.yaml", project / "params.yaml")
    result = run_mlops("manifests", "validate", "--repo-url", ours, cwd=project)
    assert result.returncode == 1 and "a fork?" in result.stderr


def test_validate_command_lists_every_finding_and_exits_1(project):
    BROKEN["latest tag"][0](project)
    BROKEN["token automount"][0](project)
    shutil.copy(Path(__file__).parents[2] / "params.yaml", project / "params.yaml")
    result = run_mlops("manifests", "validate", cwd=project)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert (
        "problem(s):" in result.stderr
        and ":latest" in result.stderr
        and "automountServiceAccountToken" in result.stderr
    )


def test_validate_and_build_on_the_repository(root):
    result = run_mlops("manifests", "validate", cwd=root)
    assert result.returncode == 0, result.stderr
    assert "objects in 5 trees valid" in result.stdout
    built = list(yaml.safe_load_all(run_mlops("manifests", "build", "staging", cwd=root).stdout))
    assert {o["metadata"].get("namespace") for o in built if o["kind"] != "Namespace"} == {"mpg-staging"}


def test_an_unknown_tree_is_one_line(root):
    assert "staging, production" in one_line_error(run_mlops("manifests", "build", "qa", cwd=root), 2)


def test_store_secret_prints_the_secret_with_the_overlays_endpoint_or_names_what_is_missing(root):
    env = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    line = one_line_error(run_mlops("manifests", "store-secret", "staging", cwd=root, env=env), 2)
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY not set" in line
    env = {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "key"}
    result = run_mlops("manifests", "store-secret", "staging", cwd=root, env=env)
    secret = yaml.safe_load(result.stdout)
    assert secret["metadata"]["namespace"] == "mpg-staging" and secret["stringData"]["AWS_ACCESS_KEY_ID"] == "id"
    endpoint = run_mlops("manifests", "model-store", "staging", cwd=root).stdout.strip()
    assert secret["metadata"]["annotations"]["serving.kserve.io/s3-endpoint"] == endpoint.split("://")[1]


@pytest.mark.parametrize(
    "entry",
    ["https://raw.githubusercontent.com/attacker/x/main/evil.yaml", "github.com/attacker/x//k8s?ref=main",
     "git@gitlab.com:attacker/x.git", "../no-such-folder"],
    ids=["https", "github-shorthand", "ssh", "missing-path"],
)  # fmt: skip
def test_a_remote_kustomize_resource_is_refused_before_kustomize_runs(project, entry):
    """A remote resource would make every render (validate, diff, mlops up) wait for a server outside git:
    kubectl kustomize has no timeout. Refused in one line naming the file and the entry."""
    kustomization = project / "k8s/overlays/staging/kustomization.yaml"
    edit_yaml(kustomization, lambda d: d["resources"].append(entry))
    shutil.copy(Path(__file__).parents[2] / "params.yaml", project / "params.yaml")  # the project root is the copy
    result = run_mlops("manifests", "validate", cwd=project)
    line = one_line_error(result)
    assert f"kustomization.yaml: resources entry {entry!r} is not a file or folder of this repository" in line
    assert "remote resources are refused" in line


def test_a_render_that_does_not_finish_is_one_error_within_its_deadline(root, monkeypatch):
    """kubectl kustomize has no timeout of its own: mlops up waited for good on a render that never ended. Every
    render has a deadline now (here shortened so the real kustomize cannot make it)."""
    import time

    from infra import manifests

    monkeypatch.setattr(manifests, "RENDER_TIMEOUT", 0.001)
    started = time.monotonic()
    with pytest.raises(manifests.ManifestError, match=r"kustomize did not finish within 0.001 s for .*staging"):
        manifests.render(root / "k8s" / "overlays" / "staging")
    assert time.monotonic() - started < 5
