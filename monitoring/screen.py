"""Feedback is untrusted: screen it before it becomes training data.

Anyone who can use the public page can report a consumption. Reported as training rows,
80 heavy cars claimed at 38 mpg (the model said 18) taught a retrained model that heavy
cars are frugal, and the gate passed it. So ``mlops data ingest --from-feedback`` adds a
feedback row only when it passes the screen (``ingest:`` in params.yaml); the others go
to ``data/quarantine.csv``, which the data merge request shows, and are added only when
someone accepts them explicitly (``--accept-quarantined``):

- **residual**: the reported consumption is further from what the serving model predicted
  than ``max_residual`` times that model's holdout RMSE;
- **outside the training ranges**: the car lies outside what the model was trained on;
- **burst**: one client reported more than ``max_per_client`` rows in this ingest (all of
  that client's rows are held).

Feedback carrying a reporter's token (the monitor's ``MLOPS_FEEDBACK_TOKENS``) is trusted
and not screened.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from core.features import FEATURES, TARGET
from monitoring.ingest import Origin

REASONS = ("residual", "outside the training ranges", "burst")
DATA_COLUMNS = [TARGET, *(f.name for f in FEATURES), "name"]  # what becomes a data row


def feedback_rows(engine, since: float = 0.0) -> pd.DataFrame:
    """Feedback-labelled predictions: the seven features and the actual mpg as data rows (strings), with what
    screening and provenance need (request id, row, client, reporter, time, predicted mpg, range flags, model)."""
    import sqlalchemy as sa

    from monitoring import db

    p, f = db.predictions, db.feedback
    query = (
        sa.select(p, f.c.actual_mpg, f.c.client, f.c.reporter, f.c.reported)
        .select_from(p.join(f, (f.c.request_id == p.c.request_id) & (f.c.row == p.c.row)))
        .where(f.c.reported >= since)
        .order_by(p.c.time)
    )
    with engine.connect() as connection:
        rows = pd.DataFrame(connection.execute(query).mappings().all())
    if rows.empty:
        return pd.DataFrame(columns=DATA_COLUMNS, dtype=str)
    table = pd.DataFrame({TARGET: rows["actual_mpg"].round(2).map("{:g}".format)})
    for feature in FEATURES:
        table[feature.name] = rows[feature.name].map("{:g}".format)
    table["name"] = "feedback " + rows["request_id"] + "/" + rows["row"].astype(str)
    extra = ["request_id", "row", "client", "reporter", "reported", "mpg", "outside_training_range", "model_id"]
    return pd.concat([table, rows[extra].rename(columns={"mpg": "predicted_mpg"})], axis=1)


def origins(frame: pd.DataFrame) -> list[Origin]:
    """The provenance of feedback rows: their prediction, who reported them, when."""
    return [
        Origin(
            "feedback",
            f"{row.request_id}/{row.row}",
            f"reporter:{row.reporter}" if row.reporter else row.client,
            datetime.fromtimestamp(row.reported, UTC).isoformat(timespec="seconds"),
        )
        for row in frame.itertuples(index=False)
    ]


def screen(frame: pd.DataFrame, max_residual: float, max_per_client: int, unit_rmse: dict[str, float]) -> pd.Series:
    """The reason each feedback row is held ("" for a row that passes), for ``frame`` of ``feedback_rows``.

    ``unit_rmse``: holdout RMSE by model id (the unit of ``max_residual``); a model missing from it is judged
    against the largest known one.
    """
    reasons = pd.Series("", index=frame.index, dtype=object)
    trusted = frame["reporter"].astype(str) != ""
    unit = frame["model_id"].map(unit_rmse).fillna(max(unit_rmse.values(), default=1.0)).astype(float)
    residual = (frame[TARGET].astype(float) - frame["predicted_mpg"].astype(float)).abs()
    outside = frame["outside_training_range"].astype(str) != ""
    per_client = frame.groupby("client")["client"].transform("size")
    for reason, mask in (
        ("burst", per_client > max_per_client),
        ("outside the training ranges", outside),
        ("residual", residual > max_residual * unit),
    ):  # the last that applies is named, the most telling
        reasons[mask.to_numpy() & ~trusted.to_numpy()] = reason
    return reasons


def quarantine_table(frame: pd.DataFrame, reasons: pd.Series) -> pd.DataFrame:
    """The held rows for review: the data row, what was predicted, who reported it, why it is held."""
    held = frame[reasons.to_numpy() != ""]
    columns = [TARGET, *(f.name for f in FEATURES), "predicted_mpg", "request_id", "row", "client", "model_id"]
    table = held[columns].copy()
    table["residual"] = (held[TARGET].astype(float) - held["predicted_mpg"].astype(float)).round(2)
    table["reason"] = reasons[reasons != ""]
    return table


def residuals(frame: pd.DataFrame) -> np.ndarray:
    return frame[TARGET].astype(float).to_numpy() - frame["predicted_mpg"].astype(float).to_numpy()
