#!/busybox/sh
# main, when code changes: build the project image with kaniko (no Docker daemon) and push it,
# tagged with the commit and with the version pipelines/image.py names.
set -eu
tag=$(sed -n 's/^IMAGE = ".*:\(.*\)"$/\1/p' pipelines/image.py)
mkdir -p /kaniko/.docker
printf '{"auths":{"%s":{"username":"%s","password":"%s"}}}' \
    "$CI_REGISTRY" "$CI_REGISTRY_USER" "$CI_REGISTRY_PASSWORD" >/kaniko/.docker/config.json
/kaniko/executor --context "$CI_PROJECT_DIR" --dockerfile "$CI_PROJECT_DIR/Dockerfile" \
    --destination "$CI_REGISTRY_IMAGE:$CI_COMMIT_SHORT_SHA" --destination "$CI_REGISTRY_IMAGE:$tag"
