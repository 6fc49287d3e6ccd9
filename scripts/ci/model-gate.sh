#!/usr/bin/env bash
# Merge requests that change data, params or training code: train on the MR's revision and gate
# the candidate against what production serves. The report is the job's artifact.
source "$(dirname "$0")/common.sh"
use_model_store
mlops data pull --remote s3
mlops train --out models/candidate
mkdir -p reports
mlops gate --candidate models/candidate --champion production --report reports/gate.json
