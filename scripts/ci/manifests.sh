#!/usr/bin/env bash
# Merge requests: schemas + policy over every tree, and the rendered trees for the kubeconform job.
source "$(dirname "$0")/common.sh"
mlops manifests validate
mkdir -p rendered
for tree in staging production base/kfp argocd; do
    mlops manifests build "$tree" >"rendered/${tree//\//-}.yaml"
done
