#!/usr/bin/env bash
# Merge requests: what the change does to the cluster, rendered, as the job's artifact (linked in the MR).
# Nothing is posted: that would need an api-scope token here, where the merge request's own code runs.
source "$(dirname "$0")/common.sh"
git fetch --quiet origin "$CI_MERGE_REQUEST_TARGET_BRANCH_NAME"
mlops gitops diff --base "origin/$CI_MERGE_REQUEST_TARGET_BRANCH_NAME" --format markdown --output gitops-diff.md
