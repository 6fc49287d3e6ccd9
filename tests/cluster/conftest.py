"""One real control plane per supported KServe release (etcd, kube-apiserver, kube-controller-manager and KServe's
manager and webhooks, built from their Go modules by `make test`), bootstrapped as docs/cluster.md says and every tree
synced as Argo CD syncs it. What cannot run here, and what stands in for it, is named in gitops/clustercheck.py
and infra/controlplane.py: the kubelet (Pod status written through the status subresource), an ingress controller
(an Ingress address), the CNI (the policies are judged by network-config-analyzer, not enforced), Argo CD's sync
engine (waves applied in its order, health by its own Lua scripts), GitLab."""

from __future__ import annotations

import pytest

from gitops.clustercheck import LocalCluster, run_check
from infra.gobuild import short, versions

RELEASES = versions().kserve


@pytest.fixture(scope="session")
def nca(root) -> str:
    path = root / ".venv-nca" / "bin" / "nca"
    assert path.is_file(), "network-config-analyzer is missing: `make test` installs it (.venv-nca)"
    return str(path)


@pytest.fixture(scope="session", params=RELEASES, ids=short)
def cluster(request, root, nca):
    """A started cluster of one release, after the whole check ran on it (its verdicts in ``.verdicts``)."""
    lines = []
    started = LocalCluster(root, request.param, progress=lines.append).start()
    try:
        started.verdicts = run_check(started, nca)
        yield started
    finally:
        started.stop()
