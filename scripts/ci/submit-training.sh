#!/usr/bin/env bash
# main, when data, params or training code change: run the production pipeline on this commit in
# Kubeflow. Its propose step opens the staging bump MR (the gate's champion: what production serves).
source "$(dirname "$0")/common.sh"
mlops pipeline submit --host "$MLOPS_KFP_HOST" --experiment mpg-production \
    --param "repo=$MLOPS_GIT_REMOTE" --param "data_revision=$CI_COMMIT_SHA" --param dvc_remote=s3 \
    --param champion_uri=production --param open_merge_request=true \
    --param "merge_request_target=$CI_DEFAULT_BRANCH"
