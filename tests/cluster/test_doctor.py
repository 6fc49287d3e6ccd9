"""`mlops cluster doctor` against a real API server with a real KServe install: each prerequisite found, or named
with its fix. Argo CD and Kubeflow Pipelines are not installed here: their Deployments stand in (replicas 0), with
the images their releases ship, for the version check only."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

MLOPS = Path(sys.executable).parent / "mlops"


def doctor(cluster) -> subprocess.CompletedProcess:
    return subprocess.run(
        [MLOPS, "cluster", "doctor", "--kubeconfig", str(cluster.plane.kubeconfig)],
        capture_output=True,
        text=True,
        cwd=cluster.root,
        timeout=120,
    )


def stand_in(name: str, namespace: str, image: str) -> dict:
    labels = {"app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": name, "image": image}]}},
        },
    }


def lines(result: subprocess.CompletedProcess) -> dict[str, str]:
    return {line[5:].split(":")[0]: line for line in result.stdout.splitlines() if line[:4] in ("ok  ", "FAIL")}


def test_doctor_names_each_missing_or_old_prerequisite_and_passes_a_cluster_that_has_them(cluster):
    found = doctor(cluster)
    assert found.returncode == 1, found.stdout + found.stderr
    by = lines(found)
    assert by["Argo CD"].startswith("FAIL") and "not found" in by["Argo CD"]
    assert by["Kubeflow Pipelines"].startswith("FAIL")
    for ok in (
        "Kubernetes",
        "KServe release",
        "KServe default deployment mode",
        "KServe's storage initializer passes Pod Security restricted",
    ):
        assert by[ok].startswith("ok"), by[ok]

    cluster.plane.apply(
        [stand_in("argocd-server", "argocd", "quay.io/argoproj/argocd:v3.2.1"),
         stand_in("ml-pipeline", "kubeflow", "ghcr.io/kubeflow/kfp-api-server:2.4.1")],
        manager="platform",
    )  # fmt: skip
    by = lines(doctor(cluster))
    assert "older than 3.3" in by["Argo CD"] and "older than 2.5" in by["Kubeflow Pipelines"]

    cluster.plane.apply(
        [stand_in("argocd-server", "argocd", "quay.io/argoproj/argocd:v3.3.0"),
         stand_in("ml-pipeline", "kubeflow", "ghcr.io/kubeflow/kfp-api-server:2.15.0")],
        manager="platform",
    )  # fmt: skip
    passed = doctor(cluster)
    assert passed.returncode == 0, passed.stdout
    assert passed.stdout.strip().splitlines()[-1].endswith("prerequisites met")


def test_doctor_names_the_platform_configuration_a_bare_kserve_install_lacks(cluster):
    """KServe's release YAML alone: Knative by default, a storage initializer Pod Security refuses."""
    platform = cluster.platform_documents()
    bare = copy.deepcopy(platform)
    bare[0]["data"]["deploy"] = '{"defaultDeploymentMode": "Serverless"}'
    del bare[1]["spec"]["container"]["securityContext"]
    try:
        cluster.plane.apply(bare, manager="mpg-mlops-platform", force=True)
        by = lines(doctor(cluster))
    finally:
        cluster.plane.apply(platform, manager="mpg-mlops-platform", force=True)
    fix = "k8s/platform/kserve.yaml"
    assert by["KServe default deployment mode"].startswith("FAIL") and fix in by["KServe default deployment mode"]
    storage = by["KServe's storage initializer passes Pod Security restricted"]
    assert storage.startswith("FAIL") and fix in storage


def test_the_store_secret_the_readme_pipes_into_kubectl_is_taken_as_written(cluster):
    """`mlops manifests store-secret ENV | kubectl apply -f -` (docs/cluster.md) against the real API server, with
    keys YAML would have turned into a boolean, a number or null: each arrives as the string it is."""
    import base64
    import os

    for access, secret in (("y", "on"), ("0123", "1e3"), ("null", "no")):
        printed = subprocess.run(
            [MLOPS, "manifests", "store-secret", "staging", "--namespace", "mpg-staging"],
            capture_output=True, text=True, cwd=cluster.root, check=True,
            env={**os.environ, "AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret},
        )  # fmt: skip
        cluster.plane.kubectl("apply", "-f", "-", input=printed.stdout)
        data = cluster.plane.get("secret", "mpg-s3-credentials", "mpg-staging")["data"]
        assert base64.b64decode(data["AWS_ACCESS_KEY_ID"]).decode() == access
        assert base64.b64decode(data["AWS_SECRET_ACCESS_KEY"]).decode() == secret
