"""What every benchmark reports: figures against a baseline measured in the same run, and BENCHMARKS.md.

Each ``python -m bench`` command builds a :class:`Section` (its detailed table, and the
headline :class:`Figure` s); ``python -m bench all`` runs them all, prints one table of
the figures and writes them, with the machine they ran on, to ``BENCHMARKS.md``.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

#: Libraries whose versions decide the figures.
LIBRARIES = ("scikit-learn", "numpy", "kserve", "uvicorn", "fastapi", "kfp", "dvc", "SQLAlchemy", "psycopg")


@dataclass(frozen=True)
class Figure:
    """One measured value against its baseline (``baseline_value`` in the same unit), and the target if any."""

    what: str
    value: float
    unit: str
    baseline: str = ""
    baseline_value: float | None = None
    target: str = ""

    @property
    def ratio(self) -> float | None:
        return None if not self.baseline_value else self.value / self.baseline_value


@dataclass
class Section:
    title: str
    detail: str
    figures: list[Figure] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # a target the run missed that the command fails on


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return ""
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{text} {unit}".strip()


def rows(sections: list[Section]) -> list[tuple[str, ...]]:
    """(area, figure, value, baseline, baseline value, ratio, target) per figure, formatted."""
    return [
        (
            section.title,
            f.what,
            _number(f.value, f.unit),
            f.baseline,
            _number(f.baseline_value, f.unit),
            "" if f.ratio is None else f"{f.ratio:.2f}",
            f.target,
        )
        for section in sections
        for f in section.figures
    ]


HEADER = ("area", "figure", "value", "baseline", "baseline value", "ratio", "target")


def summary_table(sections: list[Section]) -> str:
    """One plain-text table of every figure."""
    table = [HEADER, *rows(sections)]
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in table)


def machine() -> dict[str, str]:
    """Where the figures were measured."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line]
        model = names[0] if names else model
    versions = []
    for name in LIBRARIES:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{model}, {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), {platform.system()}",
        "python": platform.python_version(),
        "libraries": ", ".join(versions),
    }


def markdown(sections: list[Section], command: str) -> str:
    """BENCHMARKS.md: the machine, the table of figures, then each section's own table."""
    where = machine()
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{command}`; every ratio is against a baseline measured in the same run.",
        "",
        *(f"- **{key}**: {value}" for key, value in where.items()),
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
        *("| " + " | ".join(row) + " |" for row in rows(sections)),
    ]
    for section in sections:
        lines += ["", f"## {section.title}", "", "```", section.detail, "```"]
        lines += [f"\n**Problem**: {problem}" for problem in section.problems]
    return "\n".join(lines) + "\n"
