# Sourced by every CI script: the project's pinned environment, then its tools on PATH.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
make --no-print-directory install >/dev/null
export PATH="$PWD/.venv/bin:$PATH"

# The model store a job reads: the production overlay's (k8s/overlays/production/model-store.yaml, the one
# place it is set), unless MLOPS_S3_ENDPOINT_URL names another address (a runner outside the cluster).
use_model_store() {
    MLOPS_S3_ENDPOINT_URL="${MLOPS_S3_ENDPOINT_URL:-$(mlops manifests model-store production)}"
    export MLOPS_S3_ENDPOINT_URL
}
