#!/usr/bin/env bash
# Merge requests: the committed compiled pipeline is what the code compiles to.
source "$(dirname "$0")/common.sh"
mlops pipeline compile --check
