#!/usr/bin/env bash
# `make demo`: fetch the data, run the experimental pipeline, then the compiled production
# pipeline (gate + publish to the local model store), show what runs where, then run staging and
# production with `mlops up` (each follows its overlay on this repository's main, the client page and
# API in front of its predictor) and the monitor (payload log, feedback) until Ctrl-C.
#
# Settings (make demo NAME=value): STAGING_PORT (8000), PRODUCTION_PORT (8001), MONITOR_PORT (8081),
# SERVE (1; 0 stops before serving, for scripts).
set -euo pipefail
cd "$(dirname "$0")/.."

STAGING_PORT=${STAGING_PORT:-8000}
PRODUCTION_PORT=${PRODUCTION_PORT:-8001}
MONITOR_PORT=${MONITOR_PORT:-8081}
SERVE=${SERVE:-1}
UP=""
MONITOR=""

# Probe the way the servers bind (SO_REUSEADDR): a port held only by TIME_WAIT sockets of a demo
# that just stopped is free for them, so it is free here too.
port_busy() {
    ! python -c '
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null
}

if [ "$SERVE" != 0 ]; then  # say it now, not after minutes of training
    if [ "$STAGING_PORT" = "$PRODUCTION_PORT" ] || [ "$STAGING_PORT" = "$MONITOR_PORT" ] || [ "$PRODUCTION_PORT" = "$MONITOR_PORT" ]; then
        echo "STAGING_PORT=$STAGING_PORT PRODUCTION_PORT=$PRODUCTION_PORT MONITOR_PORT=$MONITOR_PORT: the three must differ" >&2
        exit 1
    fi
    for setting in STAGING_PORT PRODUCTION_PORT MONITOR_PORT; do
        if port_busy "${!setting}"; then
            echo "port ${!setting} on 127.0.0.1 is in use: stop what listens there, or run make demo $setting=<free port>" >&2
            exit 1
        fi
    done
fi

echo "==> mlops data pull (DVC, committed local remote)"
mlops data pull
echo "==> dvc repro (experimental pipeline: validate -> train -> evaluate)"
dvc repro
echo "==> dvc metrics show"
dvc metrics show
cat <<MSG

model    models/candidate/   (model.joblib + model.json card)
metrics  reports/metrics.json
plots    reports/plots/{predicted_vs_actual,l_per_100km,residuals}.png   (or: dvc plots show)
MSG

echo
echo "==> mlops pipeline run (compiled production pipeline, kfp.local, local model store)"
status=0
mlops pipeline run --summary-json .mlops/last-run.json || status=$?
case $status in
    0) MODEL_URI=$(python -c 'import json; print(json.load(open(".mlops/last-run.json"))["model_uri"])') ;;
    3) MODEL_URI=""; echo "the gate rejected the candidate, nothing was published: the demo serves the staging model" ;;
    *) exit "$status" ;;
esac

echo
echo "==> mlops gitops status (what each environment's overlay serves)"
mlops gitops status

[ "$SERVE" = 0 ] && exit 0

stop() {  # every step on its own: one that was never started (or already gone) must not skip the others
    for pid in "$UP" "$MONITOR"; do
        if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
    done
    wait 2>/dev/null || true
}
trap stop EXIT
trap 'echo; echo "demo stopped: mlops up (nginx and the predictors) and the monitor are shut down"; exit 0' INT TERM

echo
echo "==> mlops monitor serve --port $MONITOR_PORT  +  mlops up (staging :$STAGING_PORT, production :$PRODUCTION_PORT)"
mlops monitor serve --port "$MONITOR_PORT" >.mlops/monitor.log 2>&1 &
MONITOR=$!
mlops up --staging-port "$STAGING_PORT" --production-port "$PRODUCTION_PORT" \
    --log-url "http://127.0.0.1:$MONITOR_PORT/" --monitor "http://127.0.0.1:$MONITOR_PORT" >.mlops/up.log 2>&1 &
UP=$!
python - "$UP" "$STAGING_PORT" "$PRODUCTION_PORT" <<'PY'
import os, sys, time, urllib.request
pid, ports = int(sys.argv[1]), sys.argv[2:]
for port in ports:
    for _ in range(600):
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/mpg/ready", timeout=1).status == 200:
                break
        except OSError:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                sys.exit("mlops up stopped; see .mlops/up.log")
            time.sleep(0.2)
    else:
        sys.exit("mlops up was not serving within 2 minutes; see .mlops/up.log")
PY
STAGING_URI=$(mlops gitops status --json | python -c 'import json, sys; print(json.load(sys.stdin)["staging"]["model_uri"])')
if [ -z "$MODEL_URI" ]; then
    NEXT_STEP="The gate kept the candidate out. Try another experiment, in a new shell:
  source .venv/bin/activate
  dvc exp run -S train.kernel_ridge.gamma='[0.1]' && mlops gate --candidate models/candidate --champion staging"
elif [ "$MODEL_URI" = "$STAGING_URI" ]; then
    NEXT_STEP="The model just trained is the one staging serves already (same code, data and params: same bytes).
Make a different one and publish it, in a new shell:
  source .venv/bin/activate
  dvc exp run -S train.kernel_ridge.gamma='[0.1]' && mlops gate --candidate models/candidate --champion staging
  mlops publish --model models/candidate      # prints the URI for: mlops gitops bump --env staging --model-uri URI ..."
else
    NEXT_STEP="To serve the model just trained in staging, merge its bump into main (in a new shell):
  source .venv/bin/activate
  mlops gitops bump --env staging --model-uri $MODEL_URI --branch mlops/bump --commit && git merge mlops/bump
and watch the switch: mlops gitops status"
fi
cat <<MSG

staging     http://127.0.0.1:$STAGING_PORT/     (client page; API: /v1/models/mpg:predict, /v2/models/mpg/infer)
production  http://127.0.0.1:$PRODUCTION_PORT/
Each follows its overlay on this repository's main branch, as Argo CD would.
$NEXT_STEP
Every estimate is logged to the monitor (.mlops/monitor.db); report the actual consumption
under an estimate, then: mlops monitor report --out report.html
Logs: .mlops/up.log, .mlops/monitor.log. Press Ctrl-C to stop.
MSG
wait "$UP"
echo "mlops up stopped; see .mlops/up.log" >&2
exit 1
