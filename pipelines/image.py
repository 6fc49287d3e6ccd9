"""The one image every pipeline step, the nightly submitter and the predictor run: built from ./Dockerfile.

Pinned by digest, here and in the ``images:`` of k8s/base and k8s/base/kfp (a test keeps them equal): a
tag can be pushed again, and a node that has it keeps the old build. CI builds every change of the code
(the image is tagged with the commit) and opens one merge request, `mlops gitops image`, that sets the new
digest in all three places and recompiles the pipeline. Until CI's first build the digest below names no
image.
"""

NAME = "registry.gitlab.com/mpg-mlops/mpg-mlops"
DIGEST = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
IMAGE = f"{NAME}@{DIGEST}"
