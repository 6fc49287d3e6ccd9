"""KServe 0.15 -> 0.16 in place, on the real controllers of both. An InferenceService created under 0.15 keeps
"RawDeployment" in its status, and 0.16 (until 0.19, kserve#5427) takes any recorded mode that is not "Standard"
for Knative (pkg/controller/v1beta1/inferenceservice/utils/utils.go GetDeploymentMode: the status first). It
also keeps the annotation serving.kserve.io/deploymentMode: RawDeployment that 0.15's defaulting webhook added at
creation (inference_service_defaults.go DefaultInferenceService), owned by no field manager, so no sync removes
it: once 0.16 records "Standard", its validating webhook refuses every update (kserve#5025).

The upgrade step of docs/cluster.md: clear the recorded mode, wait for 0.16 to record "Standard", then say
"Standard" in the annotation too. A bump then rolls out."""

from __future__ import annotations

import pytest

from gitops.clustercheck import NEW_MODEL, LocalCluster, SyncError, serves, with_model
from infra.controlplane import wait_until
from infra.gobuild import versions

#: docs/cluster.md's upgrade step, verbatim ("Upgrading KServe from 0.15")
CLEAR_RECORDED_MODE = [
    "patch", "inferenceservice", "mpg", "-n", "mpg-staging", "--subresource=status", "--type=json",
    "-p", '[{"op": "remove", "path": "/status/deploymentMode"}]',
]  # fmt: skip
SAY_STANDARD = [
    "annotate", "inferenceservice", "mpg", "-n", "mpg-staging", "--overwrite",
    "serving.kserve.io/deploymentMode=Standard",
]  # fmt: skip


def test_an_inference_service_made_under_0_15_serves_on_0_16_after_the_upgrade_step(root):
    v015, v016 = versions().release("0.15"), versions().release("0.16")
    cluster = LocalCluster(root, v015, progress=lambda line: None).start()
    try:
        cluster.bootstrap()
        staging = cluster.tree("overlays/staging")
        cluster.sync(staging)
        recorded = cluster.plane.get("inferenceservice", "mpg", "mpg-staging")["status"]["deploymentMode"]
        assert recorded == "RawDeployment"

        cluster.upgrade(v016)
        knative = wait_until(
            lambda: [e for e in cluster.plane.events("mpg-staging") if "knative" in e.get("message", "").lower()],
            60,
            "0.16 takes the recorded RawDeployment for Knative",
        )
        assert "fails to reconcile knative service" in knative[0]["message"]

        refused = cluster.plane.kubectl(*SAY_STANDARD, check=False)  # before the status is cleared: refused
        assert "deploymentMode cannot be changed from 'RawDeployment' to 'Standard'" in refused.stderr
        cluster.plane.kubectl(*CLEAR_RECORDED_MODE)
        wait_until(
            lambda: (
                cluster.plane.get("inferenceservice", "mpg", "mpg-staging")["status"].get("deploymentMode")
                == "Standard"
            ),
            60,
            "0.16 records Standard",
        )
        with pytest.raises(SyncError, match="from 'Standard' to 'RawDeployment'"):  # the orphaned annotation
            cluster.sync(with_model(staging, NEW_MODEL), wait=False)
        cluster.plane.kubectl(*SAY_STANDARD)
        cluster.sync(with_model(staging, NEW_MODEL), wait=False)
        assert serves(cluster, "mpg-staging", NEW_MODEL).status == "Healthy"
    finally:
        cluster.stop()
