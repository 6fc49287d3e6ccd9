#!/usr/bin/env bash
# main, when the staging model file changed (a merged bump): wait until staging serves that model,
# check it on known cars, then open the staging-to-production promotion MR.
source "$(dirname "$0")/common.sh"
if superseded k8s/overlays/staging/model.yaml; then exit 0; fi
use_model_store
mlops gitops smoke --env staging --url "$STAGING_URL"
mlops gitops promote --from staging --to production \
    --branch mlops/promote-production --commit --push --remote "$MLOPS_GIT_REMOTE" --target "$CI_DEFAULT_BRANCH"
