#!/bin/sh
# Merge requests, in the official kubeconform image: the rendered trees (artifact of `manifests`)
# against Kubernetes' schemas and the vendored CRD schemas, strictly.
set -eu
cd "$(dirname "$0")/../.."
kubeconform -strict -summary \
    -schema-location default \
    -schema-location 'k8s/schemas/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json' \
    rendered/*.yaml
