"""Holdout metrics, plots and the ``metrics.json`` DVC reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

from core.features import FEATURE_NAMES, TARGET
from core.model_card import load_model
from training.data import Dataset, holdout_split
from training.params import Params

METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.csv"
PLOTS_DIR = "plots"


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    """RMSE, MAE (mpg) and R² rounded to 6 decimals, so reruns compare equal in text too."""
    return {
        "rmse": round(float(root_mean_squared_error(y_true, y_pred)), 6),
        "mae": round(float(mean_absolute_error(y_true, y_pred)), 6),
        "r2": round(float(r2_score(y_true, y_pred)), 6),
    }


def write_plots(actual: np.ndarray, predicted: np.ndarray, out_dir: Path) -> list[Path]:
    """Predicted-vs-actual and residual plots as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    low, high = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
    paths = []
    for name, y, ylabel in (
        ("predicted_vs_actual.png", predicted, "predicted mpg"),
        ("residuals.png", predicted - actual, "residual (predicted - actual) mpg"),
    ):
        fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
        ax.scatter(actual, y, s=12, alpha=0.7)
        if name.startswith("predicted"):
            ax.plot([low, high], [low, high], color="grey", linewidth=1)
        else:
            ax.axhline(0, color="grey", linewidth=1)
        ax.set(xlabel="actual mpg", ylabel=ylabel, title=name.removesuffix(".png").replace("_", " "))
        fig.tight_layout()
        fig.savefig(out_dir / name, metadata={"Software": None})
        plt.close(fig)
        paths.append(out_dir / name)
    return paths


def evaluate(model_dir: Path, dataset: Dataset, params: Params, out_dir: Path) -> dict:
    """Score a saved model on the holdout rows; write metrics.json, predictions.csv and plots."""
    model, card = load_model(model_dir)
    _, test = holdout_split(dataset.frame, params.split.test_size, params.split.seed)
    predicted = model.predict(test[list(FEATURE_NAMES)])
    metrics = {
        "model_id": card.id,
        "algorithm": card.algorithm,
        "holdout": regression_metrics(test[TARGET], predicted),
        "cv": {"rmse_mean": card.metrics["cv_rmse_mean"], "rmse_std": card.metrics["cv_rmse_std"]},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    pd.DataFrame({"actual": test[TARGET].to_numpy(), "predicted": np.round(predicted, 6)}).to_csv(
        out_dir / PREDICTIONS_FILE, index=False
    )
    write_plots(test[TARGET].to_numpy(), predicted, out_dir / PLOTS_DIR)
    return metrics
