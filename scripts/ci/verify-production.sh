#!/usr/bin/env bash
# main, when the production model file changed (a merged promotion or rollback): production serves it.
source "$(dirname "$0")/common.sh"
if superseded k8s/overlays/production/model.yaml; then exit 0; fi
use_model_store
mlops gitops smoke --env production --url "$PRODUCTION_URL"
