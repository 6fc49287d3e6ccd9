"""``mlops cluster``: the trees on a real control plane built here (check), and a real cluster's prerequisites
(doctor)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from infra.cli import pass_project

NCA = Path(".venv-nca/bin/nca")  # network-config-analyzer in its own virtualenv (make test installs it)


@click.group("cluster")
def cluster_group():
    """The cluster half: checked on a real control plane here, or a real cluster's prerequisites.

    \b
    Example:
      mlops cluster check --kserve 0.16
      mlops cluster doctor --context my-cluster
    """


def _say(line: str) -> None:
    click.echo(line, err=True)


@cluster_group.command("check")
@click.option(
    "--kserve",
    "releases",
    multiple=True,
    metavar="RELEASE",
    help="A supported KServe release, e.g. 0.16 (repeatable) [default: every one in infra/controlplane.toml].",
)
@click.option("--keep", is_flag=True, help="Leave the (last) control plane running and print its kubeconfig.")
@click.option(
    "--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the verdicts here."
)
@pass_project
def check_command(project, releases, keep, json_out):
    """Apply every tree to a real control plane and judge what the controllers made of it.

    Builds (once, into a cache) and starts etcd, kube-apiserver, kube-controller-manager and KServe's
    manager and webhooks of each release; applies KServe's install and k8s/platform/kserve.yaml, the
    bootstrap of docs/cluster.md, then every tree wave by wave as Argo CD does; prints what KServe created and each
    verdict (admission under Pod Security, ports and selectors, endpoints, health, bump/promote/rollback/
    delete, a failing model read as Degraded, the network flows by network-config-analyzer). A kubelet
    stand-in writes Pod status; no CNI enforces the policies. Exit 1 on any failed verdict.

    \b
    Example:
      mlops cluster check --kserve 0.16 --keep
    """
    from gitops.clustercheck import check
    from infra.gobuild import BuildError, versions

    nca = project.root / NCA
    if not nca.is_file():
        raise click.ClickException(f"network-config-analyzer not found at {NCA}: `make test` installs it (or make nca)")
    v = versions()
    try:
        chosen = tuple(v.release(r) for r in releases) or v.kserve
    except BuildError as e:  # an unsupported release is a usage error
        raise click.BadParameter(str(e), param_hint="--kserve") from e
    results = check(project.root, chosen, str(nca), _say, keep=keep)
    failed = 0
    for release, verdicts in results.items():
        click.echo(f"KServe {release} on Kubernetes {v.kubernetes}:")
        for verdict in verdicts:
            click.echo(f"  {verdict}")
            failed += not verdict.ok
    if json_out:
        json_out.write_text(json.dumps({r: [vv.__dict__ for vv in vs] for r, vs in results.items()}, indent=2))
    total = sum(len(vs) for vs in results.values())
    click.echo(f"{total - failed} of {total} verdicts passed")
    if failed:
        sys.exit(1)


@cluster_group.command("doctor")
@click.option("--context", help="The kubeconfig context [default: the current one].")
@click.option(
    "--kubeconfig", type=click.Path(exists=True, dir_okay=False), help="A kubeconfig file [default: kubectl's]."
)
def doctor_command(context, kubeconfig):
    """Check a cluster for what the manifests need, each with its version floor and the fix.

    Kubernetes, KServe (a tested release, raw Deployments by default, its storage initializer
    hardened, predictor Services with a cluster IP), Argo CD, Kubeflow Pipelines, prometheus-operator's
    CRDs, and this machine's kustomize. Exit 1 when one is missing or too old.

    \b
    Example:
      mlops cluster doctor --context production
    """
    from gitops.doctor import findings, local_kubectl

    found = findings(local_kubectl(context, kubeconfig))
    for finding in found:
        click.echo(str(finding))
    bad = [f for f in found if not f.ok]
    click.echo(f"{len(found) - len(bad)} of {len(found)} prerequisites met")
    if bad:
        sys.exit(1)
