#!/usr/bin/env bash
# `make demo`: fetch the data, run the experimental pipeline, show metrics and where the outputs are.
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
