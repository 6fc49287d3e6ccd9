#!/usr/bin/env bash
# `make demo`: fetch the data, run the experimental pipeline, then the compiled production
# pipeline (gate + publish to the local model store), and show where everything is.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> mlops data pull (DVC, committed local remote)"
mlops data pull
echo "==> dvc repro (experimental pipeline: validate -> train -> evaluate)"
dvc repro
echo "==> dvc metrics show"
dvc metrics show
cat <<MSG

model    models/candidate/   (model.joblib + model.json card)
metrics  reports/metrics.json
plots    reports/plots/predicted_vs_actual.png, reports/plots/residuals.png   (or: dvc plots show)
MSG

echo
echo "==> mlops pipeline run (compiled production pipeline, kfp.local, local model store)"
mlops pipeline run --summary-json .mlops/last-run.json
