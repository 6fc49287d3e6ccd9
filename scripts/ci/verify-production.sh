#!/usr/bin/env bash
# main, when the production model file changed (a merged promotion or rollback): production serves it.
source "$(dirname "$0")/common.sh"
use_model_store
mlops gitops smoke --env production --url "$PRODUCTION_URL"
