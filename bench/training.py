"""Training benchmarks: the experimental pipeline end to end, and fit time as the data grows.

Run with ``python -m bench training`` (or ``make bench``). Each table compares against a
baseline measured in the same run and prints the ratios.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.figures import Figure, Section
from bench.worktree import copy_worktree
from infra.settings import project_root
from training.candidates import CANDIDATES, build
from training.data import Dataset
from training.params import Params

NOISY_COLUMNS = ("displacement", "horsepower", "weight", "acceleration", "mpg")


def resample(frame: pd.DataFrame, factor: int, seed: int = 0) -> pd.DataFrame:
    """``factor`` times the rows, drawn with replacement, continuous columns jittered by 2 %."""
    rng = np.random.default_rng(seed)
    rows = frame.sample(len(frame) * factor, replace=True, random_state=seed).reset_index(drop=True)
    for column in NOISY_COLUMNS:
        rows[column] = rows[column] * (1 + rng.normal(0, 0.02, len(rows)))
    return rows


def fit_times(dataset: Dataset, params: Params, factors=(1, 10, 100)) -> pd.DataFrame:
    """Seconds for one fit of every registered candidate (first grid point) at each data size."""
    from training.train import exact_kernel_is_fine

    table = pd.DataFrame(index=list(CANDIDATES))
    for factor in (0, *factors):  # pass 0 warms up imports and caches and is discarded
        frame = resample(dataset.frame, factor) if factor > 1 else dataset.frame
        column = f"{factor}x ({len(frame)} rows)" if factor else "warm-up"
        for name in CANDIDATES:
            estimator, grid = build(name, params.train)
            estimator.set_params(**{key: values[0] for key, values in grid.items()})
            started = time.perf_counter()
            with exact_kernel_is_fine():
                estimator.fit(frame.drop(columns="mpg"), frame["mpg"])
            table.loc[name, column] = time.perf_counter() - started
    table = table.drop(columns="warm-up")
    for (low, low_col), (high, high_col) in itertools.pairwise(zip(factors, list(table.columns), strict=True)):
        table[f"{high}x/{low}x"] = table[high_col] / table[low_col]
    return table


def selection_times(dataset: Dataset, params: Params, factors=(1, 10, 100)) -> dict[str, float]:
    """Seconds for the whole selection (CV of every candidate over its grid, then the final fit)."""
    from training.train import fit_selected, score_candidate, select

    times = {}
    for factor in factors:
        frame = resample(dataset.frame, factor) if factor > 1 else dataset.frame
        started = time.perf_counter()
        scores = [score_candidate(name, frame, params.train) for name in params.train.candidates]
        fit_selected(select(scores), frame, params.train)
        times[f"{factor}x ({len(frame)} rows)"] = time.perf_counter() - started
    return times


def pipeline_time(root: Path) -> dict[str, float]:
    """Wall time of ``dvc repro -f`` in a fresh copy, against the floor of starting its three processes."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    with tempfile.TemporaryDirectory() as tmp:
        repo = copy_worktree(root, Path(tmp) / "repo")
        subprocess.run(["mlops", "data", "pull"], cwd=repo, env=env, check=True, capture_output=True)
        started = time.perf_counter()
        subprocess.run(["dvc", "repro", "-f"], cwd=repo, env=env, check=True, capture_output=True)
        repro = time.perf_counter() - started
    started = time.perf_counter()
    imports = "import training.train, training.evaluate, training.validation"
    for _ in range(3):
        subprocess.run([sys.executable, "-c", imports], check=True)
    floor = time.perf_counter() - started
    return {"dvc repro -f (3 stages)": repro, "floor: 3 x start python + import": floor, "ratio": repro / floor}


def section(dataset: Dataset, params: Params, factors: tuple[int, ...], skip_pipeline: bool = False) -> Section:
    """The experimental pipeline against its floor, fit time per candidate and the whole selection per size."""
    lines, figures = [], []
    if not skip_pipeline:
        timed = pipeline_time(project_root())
        lines.append("experimental pipeline, fresh copy of the repo (seconds):")
        lines += [f"  {label:<36} {value:8.2f}" for label, value in timed.items()]
        lines.append("")
        repro, floor = list(timed.values())[:2]
        figures.append(Figure("dvc repro -f (3 stages)", repro, "s", "3 x start Python + import", floor))
    lines.append("seconds per fit (first grid point), data resampled with 2 % noise:")
    lines.append(fit_times(dataset, params, factors).to_string(float_format=lambda v: f"{v:.3f}"))
    lines.append("\nseconds for the whole CV selection (all candidates and grid points, 5 folds, final fit):")
    times = selection_times(dataset, params, factors)
    first_size, first = factors[0], next(iter(times.values()))
    for size, (label, seconds) in zip(factors, times.items(), strict=True):
        ratio = f"{seconds / first:6.1f}x the {first_size}x time (linear: {size / first_size:g}x)"
        lines.append(f"  {label:<20} {seconds:8.2f}   {ratio}")
        if size != first_size:
            target = f"ratio <= {size / first_size:g}"
            figures.append(Figure(f"CV selection at {label}", seconds, "s", f"{first_size}x selection", first, target))
    return Section("Training", "\n".join(lines), figures)
