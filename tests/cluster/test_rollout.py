"""Healthy must mean the new model serves. In raw Deployment mode KServe's Ready is the Deployment's Available
(inference_service_status.go PropagateRawStatus) and, with maxUnavailable 0, the old Pods keep it true while the
new model's Pods restart; Argo CD's InferenceService health reads those conditions only. Here, on each release's
real controllers, after the check bumped staging to a model whose Pods never become ready (the kubelet stand-in
reports them CrashLoopBackOff, as a kubelet would for a predictor that exits on a model it cannot verify):
`mlops gitops status --cluster` says Degraded with the reason and `mlops gitops smoke --kubeconfig` fails at once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from gitops import argocd
from gitops.clustercheck import FAILING_MODEL

MLOPS = os.path.join(os.path.dirname(sys.executable), "mlops")


def project_naming(tmp_path, root, staging_uri: str):
    """A copy of the project whose staging overlay names ``staging_uri`` (git after that bump merged)."""
    copy = tmp_path / "project"
    copy.mkdir()
    shutil.copy(root / "params.yaml", copy)
    shutil.copytree(root / "k8s", copy / "k8s")
    model = copy / "k8s/overlays/staging/model.yaml"
    text = model.read_text()
    model.write_text(text.replace(text.split("storageUri: ")[1].split()[0], staging_uri))
    return copy


def run(project, *args):
    env = {**os.environ, "MLOPS_PROJECT_ROOT": str(project)}
    return subprocess.run([MLOPS, *args], capture_output=True, text=True, env=env, cwd=project, timeout=120)


def test_a_failing_model_is_degraded_in_gitops_status_while_kserve_and_argo_cd_say_ready(cluster, root, tmp_path):
    isvc = cluster.plane.get("inferenceservice", "mpg", "mpg-staging")
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == FAILING_MODEL, "the check's last bump"
    ready = {c["type"]: c["status"] for c in isvc["status"]["conditions"]}
    argo = argocd.health(isvc)
    project = project_naming(tmp_path, root, FAILING_MODEL)
    result = run(project, "gitops", "status", "--cluster", "--kubeconfig", str(cluster.plane.kubeconfig), "--json")
    assert result.returncode == 0, result.stderr
    staging = json.loads(result.stdout)["staging"]["cluster"]
    assert staging["status"] == "Degraded" and staging["sync"] == "Synced"
    assert "CrashLoopBackOff" in staging["message"]
    # what the two upstream judgements say meanwhile, per release (0.15 and 0.20: Ready; 0.16: in progress)
    assert ready["Ready"] == "True" or argo.status == "Progressing", (ready, argo)
    text = run(project, "gitops", "status", "--cluster", "--kubeconfig", str(cluster.plane.kubeconfig)).stdout
    assert "cluster: Synced Degraded, the new model's Pods fail" in text
    production = json.loads(result.stdout)["production"]["cluster"]
    assert production["status"] == "Missing", "the check deleted production's InferenceService last"


def test_the_smoke_check_fails_at_once_on_a_failing_rollout(cluster, root, tmp_path):
    project = project_naming(tmp_path, root, FAILING_MODEL)
    result = run(
        project, "gitops", "smoke", "--env", "staging", "--url", "http://127.0.0.1:9", "--timeout", "60",
        "--interval", "1", "--kubeconfig", str(cluster.plane.kubeconfig),
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("Error: mpg-staging does not roll out model ffffffffffff: Degraded")
    assert len(result.stderr.strip().splitlines()) == 1
