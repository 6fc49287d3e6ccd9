"""The generated parts of the docs: the CLI reference (docs/cli.md, from click's own help) and the support
matrix (docs/cluster.md, from infra/controlplane.toml). ``make docs`` writes them; ``python -m mlops.docs
--check`` (in ``make check`` and ``make test``) fails when either is stale, so the docs cannot drift from
the code."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
CLI_REFERENCE = ROOT / "docs" / "cli.md"
CLUSTER_DOC = ROOT / "docs" / "cluster.md"
MATRIX = re.compile(r"(<!-- support-matrix:start -->\n).*?(<!-- support-matrix:end -->)", re.DOTALL)


def _commands(group: click.Group, ctx: click.Context):
    for name in sorted(group.list_commands(ctx)):
        command = group.get_command(ctx, name)
        sub = click.Context(command, info_name=name, parent=ctx)
        if isinstance(command, click.Group):
            yield from _commands(command, sub)
        else:
            yield sub


def cli_reference() -> str:
    """Every command's usage, help and options, as ``mlops <command> --help`` prints them."""
    from mlops.cli import main

    root = click.Context(main, info_name="mlops", terminal_width=100, max_content_width=100, **main.context_settings)
    lines = [
        "# CLI reference",
        "",
        "Generated from the commands' own `--help` by `make docs` (a test keeps it current). Exit statuses:",
        "[README](../README.md#exit-statuses).",
        "",
    ]
    contents = []
    sections = []
    for ctx in _commands(main, root):
        path = ctx.command_path
        anchor = path.replace(" ", "-")
        contents.append(f"- [`{path}`](#{anchor})")
        help_text = ctx.command.get_help(ctx).replace("Usage: ", "", 1)
        sections += [f"## {path}", "", "```text", help_text.rstrip(), "```", ""]
    return "\n".join([*lines, *contents, "", *sections])


def support_matrix() -> str:
    """The KServe releases x the Kubernetes version the cluster tests run, with what else is built."""
    from infra.gobuild import short, versions

    v = versions()
    rows = [
        "| KServe | Kubernetes (kube-apiserver, kube-controller-manager) | etcd | checked by |",
        "|---|---|---|---|",
    ]
    for release in v.kserve:
        rows.append(
            f"| {release} | {v.kubernetes} | {v.etcd} | `mlops cluster check --kserve {short(release)}`; "
            f"tests/cluster/ `[{short(release)}]` |"
        )
    rows += [
        "",
        f"Argo CD's CRDs and health scripts from `argo-cd/v3` {v.argocd}; PodMonitor and PrometheusRule CRDs from "
        f"prometheus-operator {v.prometheus_operator}. Generated from `infra/controlplane.toml` by `make docs`.",
    ]
    return "\n".join(rows) + "\n"


def rendered() -> dict[Path, str]:
    cluster = CLUSTER_DOC.read_text()
    if not MATRIX.search(cluster):
        raise SystemExit(f"{CLUSTER_DOC}: no <!-- support-matrix:start/end --> markers")
    return {
        CLI_REFERENCE: cli_reference(),
        CLUSTER_DOC: MATRIX.sub(lambda m: m.group(1) + support_matrix() + m.group(2), cluster),
    }


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for path, text in rendered().items():
        if path.exists() and path.read_text() == text:
            continue
        if check:
            stale.append(str(path.relative_to(ROOT)))
        else:
            path.write_text(text)
    if stale:
        print(f"error: {', '.join(stale)} out of date with the code: run make docs and commit", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
