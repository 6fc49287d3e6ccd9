"""``python -m bench``: the benchmarks, outside the product's ``mlops`` command (the product never imports them)."""

from bench.cli import bench_group

bench_group(prog_name="python -m bench")
