#!/bin/sh
# main, when code changes: build one image of the Dockerfile (its default stage, `platform`, or the predictor's
# `serving` stage) with BuildKit rootless, daemonless (no Docker daemon, no privileged runner), push it tagged
# with the commit, and hand its digest to propose-image (dotenv), which pins both by digest in one MR.
# One image per job: nothing of one build reaches the other.
set -eu
stage="$1"
case "$stage" in
    platform)
        name="$CI_REGISTRY_IMAGE"
        ;;
    serving)
        name="$CI_REGISTRY_IMAGE/serving"
        ;;
    *)
        echo "error: build-image.sh platform|serving, not '$stage'" >&2
        exit 2
        ;;
esac
mkdir -p "$HOME/.docker"
auth=$(printf '%s:%s' "$CI_REGISTRY_USER" "$CI_REGISTRY_PASSWORD" | base64 | tr -d '\n')
printf '{"auths":{"%s":{"auth":"%s"}}}' "$CI_REGISTRY" "$auth" >"$HOME/.docker/config.json"
buildctl-daemonless.sh build --frontend dockerfile.v0 \
    --local context="$CI_PROJECT_DIR" --local dockerfile="$CI_PROJECT_DIR" --opt target="$stage" \
    --output "type=image,name=$name:$CI_COMMIT_SHA,push=true" --metadata-file /tmp/metadata.json
digest=$(sed -n 's/.*"containerimage.digest": *"\(sha256:[0-9a-f]\{64\}\)".*/\1/p' /tmp/metadata.json)
if [ -z "$digest" ]; then
    echo "error: BuildKit wrote no image digest (/tmp/metadata.json): the push did not complete" >&2
    exit 1
fi
if [ "$stage" = platform ]; then
    echo "MLOPS_BUILT_IMAGE=$name@$digest" >image.env
else
    echo "MLOPS_BUILT_SERVING_IMAGE=$name@$digest" >serving-image.env
fi
