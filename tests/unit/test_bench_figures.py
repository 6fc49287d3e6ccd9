"""BENCHMARKS.md: figures against their baselines, the machine they ran on, each section's own table."""

from __future__ import annotations

import re

from bench.figures import Figure, Section, markdown, summary_table
from bench.manifests import section as manifests_section


def test_a_ratio_is_the_value_over_its_baseline_and_absent_without_one():
    assert Figure("x", 3.0, "s", "floor", 2.0).ratio == 1.5
    assert Figure("x", 3.0, "s").ratio is None
    assert Figure("x", 3.0, "s", "floor", 0.0).ratio is None


def test_the_manifest_section_measures_validation_and_rendering_and_the_file_says_where(root):
    measured = manifests_section(root, runs=1)  # the real kustomize and validators, once
    (figure,) = measured.figures
    assert figure.value > 0 and figure.baseline_value > 0, "both measured (which is faster is the benchmark's)"
    other = Section("Other", "detail text", [Figure("rate", 1234.5, "req/s")], ["a target was missed"])
    text = markdown([measured, other], "python -m bench all")
    assert text.startswith("# Benchmarks\n")
    assert re.search(r"- \*\*machine\*\*: .+, \d+ cores", text)
    assert re.search(r"- \*\*libraries\*\*: .*scikit-learn \d", text)
    row = next(line for line in text.splitlines() if line.startswith("| Manifests |"))
    assert f"| {figure.ratio:.2f} |" in row and "| <= 5 s |" in row
    assert "| Other | rate | 1,234 req/s |" in text
    assert "## Manifests\n\n```\nrender (kustomize" in text
    assert "**Problem**: a target was missed" in text
    table = summary_table([measured, other]).splitlines()
    assert table[0].split()[:3] == ["area", "figure", "value"] and len(table) == 3


def test_serving_figures_compare_the_predictor_with_the_right_baselines():
    from bench.serving import NAMES, serving_figures

    def figures(rps, p99):
        return {"rps": rps, "p99_ms": p99, "p50_ms": 1.0}

    results = {
        ("V1, 1 instance", "predictor"): figures(5000.0, 4.0),
        ("V1, 1 instance", "reference"): figures(500.0, 50.0),
        ("V1, 1 instance", "trivial"): figures(8000.0, 3.0),
        ("V2, 1 instance", "predictor"): figures(4600.0, 4.5),
        ("V2, 1 instance", "reference"): figures(460.0, 50.0),
        ("V2, 1 instance", "trivial"): figures(7000.0, 3.0),
        ("V2, 1 instance", "mlserver"): figures(400.0, 60.0),
    }
    ready = {"predictor, serving-only install": 1.5, "trivial kserve model": 1.0, "MLServer + mlserver-sklearn": 1.2}
    sizes = {"serving": 400.0, "platform": 900.0, "mlserver": 450.0}
    by_name = {(f.what, f.baseline): f for f in serving_figures(results, ready=ready, sizes=sizes)}
    assert by_name[("V1, 1 instance: predictor req/s", NAMES["trivial"])].ratio == 5000 / 8000
    assert by_name[("V1, 1 instance: predictor p99", NAMES["trivial"])].ratio == 4.0 / 3.0
    assert by_name[("V1, 1 instance: predictor req/s", NAMES["reference"])].ratio == 10.0
    assert by_name[("V2, 1 instance: predictor req/s", NAMES["mlserver"])].ratio == 11.5
    assert ("V1, 1 instance: predictor req/s", NAMES["mlserver"]) not in by_name, "MLServer speaks V2 only"
    assert by_name[("1 instance: predictor V2 req/s", "the same, V1")].ratio == 4600 / 5000
    ready_figure = by_name[("time to ready: predictor, serving-only install", "trivial kserve model")]
    assert ready_figure.ratio == 1.5 and ready_figure.target == "<= 2"
    assert by_name[("time to ready: MLServer + mlserver-sklearn", "trivial kserve model")].target == ""
    assert by_name[("install: serving-only", "full (platform)")].ratio == 400 / 900
