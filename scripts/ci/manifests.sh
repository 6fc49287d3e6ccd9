#!/usr/bin/env bash
# Merge requests: schemas + policy over every tree (Argo CD syncing this project's repository, not a fork), the
# checkov scan, and the rendered trees for the kubeconform job.
source "$(dirname "$0")/common.sh"
mlops manifests validate --repo-url "$CI_SERVER_URL/$CI_PROJECT_PATH.git"
make --no-print-directory scan
mkdir -p rendered
for tree in staging production base/kfp argocd; do
    mlops manifests build "$tree" >"rendered/${tree//\//-}.yaml"
done
