#!/bin/sh
# Merge requests, in the official kubeconform image: the rendered trees (artifact of `manifests`)
# against Kubernetes' schemas and the vendored CRD schemas, strictly, once per supported KServe
# release (its InferenceService and ServingRuntime schemas first, then the other CRDs').
set -eu
cd "$(dirname "$0")/../.."
for kserve in 0.15 0.16; do
    echo "== KServe $kserve"
    kubeconform -strict -summary \
        -schema-location default \
        -schema-location "k8s/schemas/kserve-$kserve/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json" \
        -schema-location 'k8s/schemas/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json' \
        rendered/*.yaml
done
