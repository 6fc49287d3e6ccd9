# Two images from one file, the same pinned packages as training (constraints.txt), so a pickle loads with the
# scikit-learn it was made with:
#   serving   (--target serving): the predictor; `pip install .`, the predictor's dependencies only
#   platform  (the default, last stage): every Kubeflow step, the recurring-run CronJob and the monitor;
#             the serving stage plus `.[platform]` (kfp, DVC, the database drivers, the manifest tools)
FROM python:3.11.7-slim AS serving
# checkov:skip=CKV_DOCKER_2: Kubernetes ignores HEALTHCHECK; each workload has its own probes (the predictor's /v2/health/live and ready), and pipeline steps are short-lived

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MLOPS_PROJECT_ROOT=/app

RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin app

WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY core core
COPY infra infra
COPY training training
COPY pipelines pipelines
COPY serving serving
COPY gitops gitops
COPY monitoring monitoring
COPY mlops mlops
RUN pip install -c constraints.txt . && python -m compileall -q /usr/local/lib/python3.11/site-packages

USER 10001
ENTRYPOINT ["mlops"]
CMD ["serve", "--help"]

FROM serving AS platform
USER root
# git: `dvc` reads params.yaml and data at a git revision in the fetch step.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*
RUN pip install -c constraints.txt '.[platform]' && python -m compileall -q /usr/local/lib/python3.11/site-packages
COPY params.yaml dvc.yaml ./

USER 10001
CMD ["--help"]
