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

# The predictor's image: the Dockerfile's `serving` stage (`pip install .`, the predictor's dependencies
# only: no kfp, DVC, database or plotting), built and pinned with the one above, named in k8s/base only.
SERVING_NAME = "registry.gitlab.com/mpg-mlops/mpg-mlops/serving"
SERVING_DIGEST = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
SERVING_IMAGE = f"{SERVING_NAME}@{SERVING_DIGEST}"
