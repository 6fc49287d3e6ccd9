"""Holdout metrics, plots and the ``metrics.json`` DVC reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

from core.atomic import atomic_write
from core.features import FEATURE_NAMES, TARGET, to_l_per_100km
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


def _square(ax, values: np.ndarray) -> tuple[float, float]:
    """Equal, square axes over the range of ``values`` with a margin: the identity line lies at 45 degrees."""
    low, high = float(values.min()), float(values.max())
    pad = (high - low) * 0.05
    ax.set_xlim(low - pad, high + pad)
    ax.set_ylim(low - pad, high + pad)
    ax.set_aspect("equal")
    return low - pad, high + pad


def write_plots(actual: np.ndarray, predicted: np.ndarray, out_dir: Path, caption: str) -> list[Path]:
    """Predicted vs actual (mpg and L/100 km) and residuals vs predicted, as PNG; ``caption`` titles each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, x, y in (
        ("predicted_vs_actual.png", actual, predicted),
        ("l_per_100km.png", to_l_per_100km(actual), to_l_per_100km(predicted)),
    ):
        unit = "mpg" if name.startswith("predicted") else "L/100 km"
        fig, ax = plt.subplots(figsize=(6.4, 6.4), dpi=100)
        ax.scatter(x, y, s=14, alpha=0.7)
        low, high = _square(ax, np.concatenate([x, y]))
        ax.plot([low, high], [low, high], color="grey", linewidth=1, label="perfect prediction")
        ax.set(xlabel=f"actual ({unit})", ylabel=f"predicted ({unit})")
        ax.set_title(f"Predicted vs actual, {unit}\n{caption}", fontsize=10)
        ax.legend(loc="upper left")
        paths.append(_save(fig, out_dir / name))
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    ax.scatter(predicted, predicted - actual, s=14, alpha=0.7)
    ax.axhline(0, color="grey", linewidth=1)
    ax.set(xlabel="predicted mpg", ylabel="residual: predicted - actual (mpg)")
    ax.set_title(f"Residuals against the prediction\n{caption}", fontsize=10)
    paths.append(_save(fig, out_dir / "residuals.png"))
    return paths


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})  # no version stamp: the same model gives the same bytes
    plt.close(fig)
    return path


def evaluate(model_dir: Path, dataset: Dataset, params: Params, out_dir: Path, trusted: Dataset | None = None) -> dict:
    """Score a saved model on the holdout rows (and the trusted holdout the gate judges on, when given); write
    metrics.json (numbers only), predictions.csv and plots."""
    model, card = load_model(model_dir)
    _, test = holdout_split(dataset.frame, params.split.test_size, params.split.seed)
    predicted = model.predict(test[list(FEATURE_NAMES)])
    holdout = regression_metrics(test[TARGET], predicted)
    metrics = {"holdout": holdout}
    if trusted is not None:
        metrics["trusted_holdout"] = regression_metrics(trusted.y, model.predict(trusted.X))
    metrics["cv"] = {"rmse_mean": card.metrics.cv_rmse_mean, "rmse_std": card.metrics.cv_rmse_std}
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / METRICS_FILE, lambda tmp: tmp.write_text(json.dumps(metrics, indent=2) + "\n"))
    table = pd.DataFrame({"actual": test[TARGET].to_numpy(), "predicted": np.round(predicted, 6)})
    atomic_write(out_dir / PREDICTIONS_FILE, lambda tmp: table.to_csv(tmp, index=False))
    caption = (
        f"model {card.id[:12]} ({card.algorithm}), {len(test)} holdout cars\n"
        f"RMSE {holdout['rmse']:.2f} mpg, MAE {holdout['mae']:.2f} mpg, R² {holdout['r2']:.3f}"
    )
    write_plots(test[TARGET].to_numpy(), predicted, out_dir / PLOTS_DIR, caption)
    return metrics
