#!/usr/bin/env bash
# main, after build-image: one merge request pinning both new images by digest in infra/image.py, the
# kustomizations and the compiled pipeline. Merging it retrains (submit-training) on the new code.
source "$(dirname "$0")/common.sh"
mlops gitops image --image "$MLOPS_BUILT_IMAGE" --serving-image "$MLOPS_BUILT_SERVING_IMAGE" \
    --branch mlops/image --commit --push --remote "$MLOPS_GIT_REMOTE" --target "$CI_DEFAULT_BRANCH"
