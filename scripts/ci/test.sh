#!/usr/bin/env bash
# Merge requests: the README's test command (installs nginx and Chromium in the job's image as root).
set -euo pipefail
cd "$(dirname "$0")/../.."
make test
