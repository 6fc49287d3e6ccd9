#!/busybox/sh
# main, when code changes: build both images of the Dockerfile with kaniko (no Docker daemon): the platform
# image (the default stage) and the predictor's serving-only stage, push each tagged with the commit, and hand
# their digests to propose-image (dotenv), which pins them by digest everywhere in one MR.
set -eu
mkdir -p /kaniko/.docker
printf '{"auths":{"%s":{"username":"%s","password":"%s"}}}' \
    "$CI_REGISTRY" "$CI_REGISTRY_USER" "$CI_REGISTRY_PASSWORD" >/kaniko/.docker/config.json
/kaniko/executor --context "$CI_PROJECT_DIR" --dockerfile "$CI_PROJECT_DIR/Dockerfile" \
    --destination "$CI_REGISTRY_IMAGE:$CI_COMMIT_SHA" --digest-file /kaniko/digest
/kaniko/executor --context "$CI_PROJECT_DIR" --dockerfile "$CI_PROJECT_DIR/Dockerfile" --target serving \
    --destination "$CI_REGISTRY_IMAGE/serving:$CI_COMMIT_SHA" --digest-file /kaniko/serving-digest
{
    echo "MLOPS_BUILT_IMAGE=$CI_REGISTRY_IMAGE@$(cat /kaniko/digest)"
    echo "MLOPS_BUILT_SERVING_IMAGE=$CI_REGISTRY_IMAGE/serving@$(cat /kaniko/serving-digest)"
} >image.env
