#!/usr/bin/env bash
# Merge requests: what the change does to the cluster, rendered; posted as a comment when a token is set.
source "$(dirname "$0")/common.sh"
git fetch --quiet origin "$CI_MERGE_REQUEST_TARGET_BRANCH_NAME"
mlops gitops diff --base "origin/$CI_MERGE_REQUEST_TARGET_BRANCH_NAME" --format markdown --output gitops-diff.md
if [ -n "${MLOPS_GITLAB_API_TOKEN:-}" ]; then
    python - <<'PY'
import json, os, urllib.request
body = json.dumps({"body": "### Rendered manifests\n\n" + open("gitops-diff.md").read()}).encode()
url = f"{os.environ['CI_API_V4_URL']}/projects/{os.environ['CI_PROJECT_ID']}/merge_requests/{os.environ['CI_MERGE_REQUEST_IID']}/notes"
request = urllib.request.Request(url, body, {"PRIVATE-TOKEN": os.environ["MLOPS_GITLAB_API_TOKEN"], "Content-Type": "application/json"})
urllib.request.urlopen(request, timeout=30)
PY
fi
