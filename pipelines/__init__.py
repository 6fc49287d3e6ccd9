"""Production pipeline on Kubeflow Pipelines v2, reusing training/ (components, pipeline, compile, local run)."""
