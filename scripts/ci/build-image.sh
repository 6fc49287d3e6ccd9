#!/busybox/sh
# main, when code changes: build the project image with kaniko (no Docker daemon), push it tagged with the
# commit, and hand its digest to propose-image (dotenv), which pins it by digest everywhere in one MR.
set -eu
mkdir -p /kaniko/.docker
printf '{"auths":{"%s":{"username":"%s","password":"%s"}}}' \
    "$CI_REGISTRY" "$CI_REGISTRY_USER" "$CI_REGISTRY_PASSWORD" >/kaniko/.docker/config.json
/kaniko/executor --context "$CI_PROJECT_DIR" --dockerfile "$CI_PROJECT_DIR/Dockerfile" \
    --destination "$CI_REGISTRY_IMAGE:$CI_COMMIT_SHA" --digest-file /kaniko/digest
echo "MLOPS_BUILT_IMAGE=$CI_REGISTRY_IMAGE@$(cat /kaniko/digest)" >image.env
