"""KServe predictor for the project's ServingRuntime (serving issue)."""
