#!/usr/bin/env bash
# make test's test run. A cold control plane takes about 35 minutes of CPU to build on 2 cores (Go modules,
# once per version: infra/controlplane.toml), and only tests/cluster needs it; so when something is missing it
# builds in the background at the lowest priority (nice 19: it takes the CPU the tests leave idle while they
# wait on their servers) while every other test runs, and tests/cluster runs once it is done. Warm, the two
# runs follow each other. Exit status: the first failure's.
#   scripts/test.sh [PYTEST_ARGS...]      BIN= the virtualenv's bin (default .venv/bin)
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
log=.mlops/controlplane-build.log
mkdir -p .mlops

build=""
if ! "$BIN/python" -c "import sys; from infra.gobuild import missing; sys.exit(1 if missing() else 0)"; then
    echo "==> the local control plane is not built: building it in the background (nice 19) while the other" \
        "tests run; progress in $log"
    nice -n 19 "$BIN/python" -c "from infra.gobuild import ensure_built; ensure_built()" >"$log" 2>&1 &
    build=$!
fi

"$BIN/python" -m pytest --ignore=tests/cluster "$@"
status=$?

if [ -n "$build" ]; then
    echo "==> waiting for the control plane's build (its progress so far, then as it comes):"
    tail -n +1 --pid="$build" -f "$log"
    if ! wait "$build"; then
        echo "error: the control plane's build failed (its log: $log); the cluster tests did not run" >&2
        exit 1
    fi
fi

"$BIN/python" -m pytest tests/cluster "$@"
cluster=$?
exit $((status != 0 ? status : cluster))
