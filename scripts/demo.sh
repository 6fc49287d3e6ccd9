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

[ "${SERVE:-1}" = "0" ] && exit 0

# Serve the model the pipeline just published (content addressed: when it is the model the
# staging overlay points to, this is exactly what staging serves), with the client page in front.
MODEL_URI=$(python -c 'import json; print(json.load(open(".mlops/last-run.json"))["model_uri"] or "")')
if [ -z "$MODEL_URI" ]; then
    echo "the pipeline published nothing; serving the staging model instead"
    MODEL_ARGS=(--env staging)
else
    MODEL_ARGS=(--model-uri "$MODEL_URI")
    grep -q "$MODEL_URI" k8s/overlays/staging/model.yaml && echo "(this is the model k8s/overlays/staging points to)"
fi
PREDICTOR_PORT=${PREDICTOR_PORT:-8080}
CLIENT_PORT=${CLIENT_PORT:-8000}
echo
echo "==> mlops serve ${MODEL_ARGS[*]} --port $PREDICTOR_PORT  +  mlops client --port $CLIENT_PORT"
mlops serve "${MODEL_ARGS[@]}" --port "$PREDICTOR_PORT" >.mlops/serve.log 2>&1 &
SERVER=$!
trap 'kill $SERVER $CLIENT 2>/dev/null; wait 2>/dev/null' EXIT INT TERM
python - "$PREDICTOR_PORT" <<'PY'
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/v2/models/mpg/ready"
for _ in range(300):
    try:
        if urllib.request.urlopen(url, timeout=1).status == 200:
            sys.exit(0)
    except OSError:
        time.sleep(0.2)
sys.exit("the predictor did not become ready; see .mlops/serve.log")
PY
mlops client --predictor "http://127.0.0.1:$PREDICTOR_PORT" --port "$CLIENT_PORT" &
CLIENT=$!
cat <<MSG

Open http://127.0.0.1:$CLIENT_PORT/ for the client page (API: http://127.0.0.1:$PREDICTOR_PORT/v1/models/mpg:predict).
Predictor log: .mlops/serve.log. Press Ctrl-C to stop.
MSG
wait $SERVER
