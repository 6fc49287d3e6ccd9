# Sourced by every CI script: the project's pinned environment, then its tools on PATH.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
make --no-print-directory install >/dev/null
export PATH="$PWD/.venv/bin:$PATH"

# The model store a job reads, with the read-only key pair: no CI job writes to the store (the pipeline does,
# in the cluster, with its own Secret). Its address: the production overlay's (k8s/overlays/production/
# model-store.yaml, the one place it is set), unless MLOPS_S3_ENDPOINT_URL names another (a runner outside).
use_model_store() {
    local key
    for key in MLOPS_READONLY_AWS_ACCESS_KEY_ID MLOPS_READONLY_AWS_SECRET_ACCESS_KEY; do
        if [ -z "${!key:-}" ]; then
            echo "error: $key is not set: add the store's read-only key pair as CI/CD variables (docs/gitops.md, CI variables)" >&2
            exit 1
        fi
    done
    export AWS_ACCESS_KEY_ID="$MLOPS_READONLY_AWS_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$MLOPS_READONLY_AWS_SECRET_ACCESS_KEY"
    MLOPS_S3_ENDPOINT_URL="${MLOPS_S3_ENDPOINT_URL:-$(mlops manifests model-store production)}"
    export MLOPS_S3_ENDPOINT_URL
}

# Whether a newer commit on the target branch changed FILE since this pipeline's commit: two quick merges each
# start a pipeline, and the older one's promotion or check would act on a model the environment no longer names
# (resource_group serializes the jobs, in any order). Then the job has nothing to do: the newer pipeline does it.
superseded() {
    local file="$1"
    git fetch --quiet origin "$CI_DEFAULT_BRANCH"
    if ! git diff --quiet "$CI_COMMIT_SHA" "origin/$CI_DEFAULT_BRANCH" -- "$file"; then
        echo "$file changed again on $CI_DEFAULT_BRANCH after ${CI_COMMIT_SHA:0:12}: the newer pipeline acts on it"
        return 0
    fi
    return 1
}
