#!/usr/bin/env bash
# `make demo`: fetch the data, run the experimental pipeline, then the compiled production
# pipeline (gate + publish to the local model store), show what runs where, then serve the model
# with the client page and the monitor (payload log, feedback) until Ctrl-C.
#
# Settings (make demo NAME=value): PREDICTOR_PORT (8080), CLIENT_PORT (8000), MONITOR_PORT (8081),
# SERVE (1; 0 stops before serving, for scripts).
set -euo pipefail
cd "$(dirname "$0")/.."

PREDICTOR_PORT=${PREDICTOR_PORT:-8080}
CLIENT_PORT=${CLIENT_PORT:-8000}
MONITOR_PORT=${MONITOR_PORT:-8081}
SERVE=${SERVE:-1}
SERVER=""
CLIENT=""
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
    if [ "$PREDICTOR_PORT" = "$CLIENT_PORT" ] || [ "$PREDICTOR_PORT" = "$MONITOR_PORT" ] || [ "$CLIENT_PORT" = "$MONITOR_PORT" ]; then
        echo "PREDICTOR_PORT=$PREDICTOR_PORT CLIENT_PORT=$CLIENT_PORT MONITOR_PORT=$MONITOR_PORT: the three must differ" >&2
        exit 1
    fi
    for setting in PREDICTOR_PORT CLIENT_PORT MONITOR_PORT; do
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
    for pid in "$CLIENT" "$SERVER" "$MONITOR"; do
        if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
    done
    wait 2>/dev/null || true
}
trap stop EXIT
trap 'echo; echo "demo stopped: the predictor, the monitor and the client page are shut down"; exit 0' INT TERM

if [ -n "$MODEL_URI" ]; then
    MODEL_ARGS=(--model-uri "$MODEL_URI")
    grep -q "$MODEL_URI" k8s/overlays/staging/model.yaml && echo "(the model k8s/overlays/staging points to)"
else
    MODEL_ARGS=(--env staging)
fi
echo
echo "==> mlops monitor serve --port $MONITOR_PORT  +  mlops serve ${MODEL_ARGS[*]} --port $PREDICTOR_PORT --log-url ..."
echo "    +  mlops client --port $CLIENT_PORT"
mlops monitor serve --port "$MONITOR_PORT" >.mlops/monitor.log 2>&1 &
MONITOR=$!
mlops serve "${MODEL_ARGS[@]}" --port "$PREDICTOR_PORT" --log-url "http://127.0.0.1:$MONITOR_PORT/" >.mlops/serve.log 2>&1 &
SERVER=$!
python - "$PREDICTOR_PORT" "$SERVER" <<'PY'
import os, sys, time, urllib.request
url, pid = f"http://127.0.0.1:{sys.argv[1]}/v2/models/mpg/ready", int(sys.argv[2])
for _ in range(600):
    try:
        if urllib.request.urlopen(url, timeout=1).status == 200:
            sys.exit(0)
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            sys.exit("the predictor stopped; see .mlops/serve.log")
        time.sleep(0.2)
sys.exit("the predictor did not become ready in 2 minutes; see .mlops/serve.log")
PY
mlops client --predictor "http://127.0.0.1:$PREDICTOR_PORT" --monitor "http://127.0.0.1:$MONITOR_PORT" \
    --port "$CLIENT_PORT" &
CLIENT=$!
cat <<MSG

Open http://127.0.0.1:$CLIENT_PORT/ for the client page (API: http://127.0.0.1:$PREDICTOR_PORT/v1/models/mpg:predict).
Every estimate is logged to the monitor (.mlops/monitor.db); report the actual consumption
under an estimate, then: mlops monitor report --out report.html
Logs: .mlops/serve.log, .mlops/monitor.log. Press Ctrl-C to stop.
MSG
wait "$SERVER"
