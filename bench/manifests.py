"""Manifest benchmark: `mlops manifests validate` over every tree against rendering alone (kustomize)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from bench.figures import Figure, Section
from gitops.manifests import render_all, validate_all


def section(root: Path, runs: int = 5) -> Section:
    """Median seconds of rendering and of validating every tree (validation renders first)."""
    timings = {"render (kustomize, 4 trees)": [], "validate (render + schemas + policy)": []}
    for _ in range(runs):
        for label, work in zip(timings, (lambda: render_all(root), lambda: validate_all(root)), strict=True):
            started = time.perf_counter()
            work()
            timings[label].append(time.perf_counter() - started)
    medians = {label: statistics.median(values) for label, values in timings.items()}
    render, validate = medians.values()
    lines = [f"{label:<40} {seconds:6.2f} s" for label, seconds in medians.items()]
    lines.append(f"{'ratio validate / render':<40} {validate / render:6.2f}   (target: validate <= 5 s)")
    figure = Figure("mlops manifests validate", validate, "s", "kustomize rendering alone", render, "<= 5 s")
    return Section("Manifests", "\n".join(lines), [figure])
