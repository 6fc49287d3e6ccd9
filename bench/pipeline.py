"""Pipeline benchmark: the compiled pipeline end to end with kfp.local, per step, against its floor.

The floor is what the same chain of processes costs when each step only starts
Python and imports what it needs, measured in the same run.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bench.figures import Figure, Section

#: What each step imports before doing any work (kfp's executor itself is light at run time).
STEP_IMPORTS = {
    "fetch-data": "pipelines.steps, training.params",
    "validate-data": "training.data",
    "train-candidate": "training.train",
    "select-model": "core.model_card, training.selection",
    "gate": "training.gate, infra.store",
    "publish": "infra.store",
    "propose": "core.model_card, gitops.changes",
}
#: Steps on the critical path, with how many times each runs back to back on 2 cores.
CRITICAL_PATH = {
    "fetch-data": 1,
    "validate-data": 1,
    "train-candidate": 2,
    "select-model": 1,
    "gate": 1,
    "publish": 1,
    "propose": 1,
}


def import_seconds(modules: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", f"import kfp.dsl.executor_main, {modules}"],
        check=True,
        env={"_KFP_RUNTIME": "true", "PATH": str(Path(sys.executable).parent)},
    )
    return time.perf_counter() - started


def floor() -> dict[str, float]:
    """Seconds to start each step's process and import its modules (median of 3)."""
    return {step: sorted(import_seconds(m) for _ in range(3))[1] for step, m in STEP_IMPORTS.items()}


def pipeline_runs(root: Path, runs: int = 2) -> list[dict]:
    """Run the compiled pipeline ``runs`` times in a fresh copy; each summary as ``--summary-json`` writes it."""
    import json
    import os

    from bench.worktree import copy_worktree

    summaries = []
    with tempfile.TemporaryDirectory() as tmp:
        repo = copy_worktree(root, Path(tmp) / "repo")
        env = {
            **os.environ,
            "MLOPS_STORE_ROOT": f"{tmp}/store",
            "MLOPS_CACHE_DIR": f"{tmp}/cache",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        }
        env.pop("MLOPS_S3_ENDPOINT_URL", None)
        subprocess.run(["mlops", "data", "pull"], cwd=repo, env=env, check=True, capture_output=True)
        for _ in range(runs):
            out = Path(tmp) / "summary.json"
            subprocess.run(
                ["mlops", "pipeline", "run", "--summary-json", str(out)],
                cwd=repo,
                env=env,
                check=True,
                capture_output=True,
            )
            summaries.append(json.loads(out.read_text()))
    return summaries


def step_table(summaries: list[dict]) -> dict[str, float]:
    """Mean seconds per step name over runs (a looped step: mean of its iterations)."""
    seconds = defaultdict(list)
    for summary in summaries:
        for step in summary["steps"]:
            seconds[step["name"]].append(step["seconds"])
    return {name: sum(v) / len(v) for name, v in seconds.items()}


def section(root: Path, runs: int = 2) -> Section:
    """Each step and the whole run against their floors."""
    summaries = pipeline_runs(root, runs)
    steps = step_table(summaries)
    floors = floor()
    wall = sum(s["wall_seconds"] for s in summaries) / len(summaries)
    critical = sum(floors[name] * times for name, times in CRITICAL_PATH.items())
    lines = [f"{'step':<18} {'seconds':>8} {'floor':>8} {'ratio':>6}"]
    lines += [f"{n:<18} {s:8.2f} {floors[n]:8.2f} {s / floors[n]:6.2f}" for n, s in steps.items()]
    lines.append(f"{'whole run (wall)':<18} {wall:8.2f} {critical:8.2f} {wall / critical:6.2f}")
    lines.append("floor: start Python and import the step's modules; whole run: the floors on the critical path")
    figures = [Figure(f"step {n}", s, "s", "start Python + import", floors[n]) for n, s in steps.items()]
    figures.append(Figure("whole run, kfp.local (wall)", wall, "s", "floors on the critical path", critical))
    return Section("Production pipeline", "\n".join(lines), figures)
