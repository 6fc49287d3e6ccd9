"""The one image every pipeline step (and the recurring-run CronJob) runs: built from ./Dockerfile.

k8s/base/kustomization.yaml pins the same reference in its ``images:`` entry; a test
keeps the two equal. CI builds and pushes it before compiling a release.
"""

IMAGE = "registry.gitlab.com/mpg-mlops/mpg-mlops:0.1.0"
