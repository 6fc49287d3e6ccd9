#!/usr/bin/env bash
# Merge requests and the nightly schedule: known vulnerabilities in every pinned package
# (constraints.txt, what the image and the tests install), from PyPI's advisory data.
# --strict: a package that cannot be audited fails the job too.
source "$(dirname "$0")/common.sh"
pip-audit --requirement constraints.txt --no-deps --disable-pip --strict --progress-spinner off
