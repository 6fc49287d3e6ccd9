#!/usr/bin/env bash
# Merge requests: ruff lint and format check.
source "$(dirname "$0")/common.sh"
make --no-print-directory lint
