"""Drift and quality of a served model, judged against its model card alone.

Inputs drift: for each feature, the population stability index (PSI) of the served cars
against the training rows, over the card's training histogram (bins cut at the training
deciles, with the share of rows each held) or its category shares (features with few
values). PSI is an effect
size that needs only those summaries, works for discrete and continuous features
alike and has conventional readings (under 0.1 stable, over 0.25 shifted); a KS test
would need the training sample itself (not in the card) and assumes continuity, which
cylinders, origin and model year lack. A chi-square test on the same bins gives the
p-value: whether the difference is more than the noise of the served sample size.

Prediction drift is the PSI of the served predictions against the deciles of the
model's predictions on its training rows. Quality: RMSE and MAE on the cars for which
feedback gave the actual consumption, against the card's holdout figures. Traffic:
request rate, p50/p99 latency and error shares from the predictor's /metrics.
"""

from __future__ import annotations

import base64
import io
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from scipy import stats

from core.features import FEATURE_NAMES
from core.model_card import Histogram, ModelCard
from monitoring import db
from monitoring.events import MAX_CLOCK_SKEW, MODEL_ID
from serving.routes import ROUTES
from training.params import MonitorParams

EPSILON = 1e-4  # a share never observed still counts as this, so PSI stays finite

#: The routes that answer with predictions (serving/routes.py): the traffic the report judges, V1's first.
PREDICTING = tuple(route.name for route in ROUTES if route.predicts)


@dataclass
class Drift:
    name: str
    psi: float
    p_value: float
    served: list[float]  # share per bin (or category)
    expected: list[float]
    bins: list[str]


@dataclass
class Report:
    model_id: str
    algorithm: str
    since: float
    rows: int
    features: list[Drift] = field(default_factory=list)
    predictions: Drift | None = None
    outside_range_share: float = 0.0
    feedback: dict[str, Any] | None = None
    traffic: dict[str, Any] | None = None
    alerts: list[str] = field(default_factory=list)
    judged: list[str] = field(default_factory=list)  # what was compared with its threshold
    notes: list[str] = field(default_factory=list)  # what was not, and why

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def period(self) -> str:
        if self.since <= 0:
            return "over all recorded traffic"
        return f"since {time.strftime('%Y-%m-%d %H:%M', time.gmtime(self.since))} UTC"


def psi(served: np.ndarray, expected: np.ndarray) -> float:
    served, expected = np.maximum(served, EPSILON), np.maximum(expected, EPSILON)
    return float(np.sum((served - expected) * np.log(served / expected)))


def drift_of(name: str, values: np.ndarray, histogram: Histogram, categories: dict[str, float] | None = None) -> Drift:
    """PSI and chi-square p-value of served ``values`` against the training summary.

    Over ``categories`` (plus "other": values training never had) when given, else over
    the training ``histogram``'s bins.
    """
    if categories:
        expected = np.array([*categories.values(), 0.0])
        served_labels = np.array([f"{v:g}" for v in values])
        counts = np.array([np.sum(served_labels == c) for c in categories] + [0], dtype=float)
        counts[-1] = len(values) - counts[:-1].sum()
        bins = [*categories, "other"]
    else:
        counts, bins, expected = histogram.counts(values), histogram.labels(), np.asarray(histogram.shares)
    shares = counts / max(len(values), 1)
    expected_counts = np.maximum(expected, EPSILON) * len(values)
    expected_counts *= counts.sum() / expected_counts.sum()
    p_value = float(stats.chisquare(counts, expected_counts).pvalue) if len(values) else 1.0
    return Drift(
        name, round(psi(shares, expected), 6), p_value, shares.round(6).tolist(), expected.round(6).tolist(), bins
    )


def served_rows(engine, model_id: str, since: float) -> pd.DataFrame:
    """Every car the model answered since ``since``, with the feedback given for it (NaN: none)."""
    p, f = db.predictions, db.feedback
    query = (
        sa.select(p, f.c.actual_mpg)
        .select_from(p.outerjoin(f, (f.c.request_id == p.c.request_id) & (f.c.row == p.c.row)))
        .where(p.c.model_id == model_id, p.c.time >= since)
        .order_by(p.c.time)
    )
    with engine.connect() as connection:
        return pd.DataFrame(connection.execute(query).mappings().all())


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def latest_model(engine, namespace: str | None = None, now: float | None = None) -> str:
    """The model id most recently recorded with the events (in ``namespace``, if given).

    Stored data never stops the report: a row from before ingestion checked ids and times (a model id that
    is no id, a time in the future) is passed over, not taken as the latest.
    """
    now = time.time() if now is None else now
    query = (
        sa.select(db.predictions.c.model_id)
        .where(db.predictions.c.time <= now + MAX_CLOCK_SKEW)
        .order_by(db.predictions.c.time.desc())
    )
    if namespace:
        query = query.where(db.predictions.c.namespace == namespace)
    with engine.connect() as connection:
        found = next((m for (m,) in connection.execute(query) if MODEL_ID.fullmatch(m or "")), None)
    if found is None:
        where = f" in {namespace}" if namespace else ""
        raise db.MonitorDatabaseError(f"no prediction is recorded{where} yet: nothing to report on")
    return found


def _quantile_from_buckets(buckets: list[tuple[float, float]], q: float) -> float | None:
    """A quantile (seconds) from cumulative histogram buckets [(upper bound, count)], as Prometheus does."""
    total = buckets[-1][1] if buckets else 0
    if not total:
        return None
    rank, previous_bound, previous_count = q * total, 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return previous_bound
            inside = count - previous_count
            return previous_bound + (bound - previous_bound) * ((rank - previous_count) / inside if inside else 0)
        previous_bound, previous_count = bound, count
    return previous_bound


def pod_urls(metrics_url: str) -> list[str]:
    """``metrics_url`` once per address its host name has: a headless Service's name (``mpg-predictor-pods``)
    resolves to every pod, so each is read; an address, or a name with one address, is read as given."""
    import ipaddress
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(metrics_url)
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
        return [metrics_url]
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, parts.port or 80, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return [metrics_url]  # unresolvable: reading it says so in one line
    addresses = sorted({entry[4][0] for entry in found})
    if len(addresses) < 2:
        return [metrics_url]
    port = f":{parts.port}" if parts.port else ""
    return [parts._replace(netloc=f"{address}{port}").geturl() for address in addresses]


def _scrape(url: str) -> tuple[dict[str, float], dict[float, float], float | None]:
    """One predictor's answers by status, latency histogram buckets and start time, from its /metrics."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    hint = "point --metrics-url at the predictor's /metrics (in the cluster http://mpg-predictor-pods:8080/metrics)"
    try:
        text = httpx.get(url, timeout=10).raise_for_status().text
    except httpx.HTTPStatusError as e:  # httpx's own message is two lines, with a link
        answer = f"{e.response.status_code} {e.response.reason_phrase}"
        raise db.MonitorDatabaseError(
            f"cannot read the predictor's metrics at {url}: it answered {answer}; {hint}"
        ) from e
    except httpx.HTTPError as e:
        raise db.MonitorDatabaseError(f"cannot read the predictor's metrics at {url}: {e}") from e
    answers: dict[str, float] = {}
    buckets: dict[float, float] = {}
    started = None
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as e:  # an HTML page, say: a URL that is not the predictor's /metrics
        raise db.MonitorDatabaseError(f"{url} did not answer Prometheus text ({str(e)[:60]!r}): {hint}") from e
    if not any(family.name == "mpg_http_requests" for family in families):
        raise db.MonitorDatabaseError(
            f"{url} has no mpg_http_requests metric: it is not this project's predictor; {hint}"
        )
    for family in families:
        for sample in family.samples:
            if sample.name == "mpg_http_requests_total" and sample.labels.get("route") in PREDICTING:
                status = sample.labels["status"]
                answers[status] = answers.get(status, 0.0) + sample.value
            elif sample.name == "mpg_http_request_seconds_bucket" and sample.labels.get("route") == PREDICTING[0]:
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
            elif sample.name == "process_start_time_seconds":
                started = sample.value
    return answers, buckets, started


def traffic(metrics_urls: str | list[str]) -> dict[str, Any]:
    """Request rate, latency quantiles and error shares over every predictor: each URL given, and each pod a
    headless Service's name resolves to (``pod_urls``), added up (counts and histogram buckets sum; the rate
    is each pod's own since it started)."""
    urls = [
        url for given in ([metrics_urls] if isinstance(metrics_urls, str) else metrics_urls) for url in pod_urls(given)
    ]
    answers: dict[str, float] = {}
    buckets: dict[float, float] = {}
    rate = 0.0
    for url in urls:
        pod_answers, pod_buckets, started = _scrape(url)
        for status, count in pod_answers.items():
            answers[status] = answers.get(status, 0.0) + count
        for bound, count in pod_buckets.items():
            buckets[bound] = buckets.get(bound, 0.0) + count
        if started:
            rate += sum(pod_answers.values()) / max(time.time() - started, 1e-9)
    total = sum(answers.values())
    server_errors = sum(v for s, v in answers.items() if s.startswith("5"))
    client_errors = sum(v for s, v in answers.items() if s.startswith("4"))
    p50, p99 = (_quantile_from_buckets(sorted(buckets.items()), q) for q in (0.5, 0.99))
    return {
        "predictors": len(urls),
        "requests": total,
        "requests_per_second": rate if total else 0.0,
        "server_error_share": server_errors / total if total else 0.0,
        "client_error_share": client_errors / total if total else 0.0,
        "p50_ms": p50 * 1000 if p50 is not None else None,
        "p99_ms": p99 * 1000 if p99 is not None else None,
    }


def build_report(
    engine, card: ModelCard, thresholds: MonitorParams, since: float = 0.0, metrics_url: str | list[str] | None = None
) -> tuple[Report, pd.DataFrame]:
    """Every figure and every alert for ``card``'s model over the events since ``since``."""
    frame = served_rows(engine, card.id, since)
    report = Report(card.id, card.algorithm, since, len(frame))
    if card.profile is None:
        report.notes.append("the model card has no reference profile (trained before monitoring): drift not judged")
    elif len(frame) < thresholds.min_rows:
        report.notes.append(f"{len(frame)} served cars, fewer than min_rows={thresholds.min_rows}: drift not judged")
    if len(frame) and card.profile is not None:
        profiles = {p.name: p for p in card.profile.features}
        report.features = [
            drift_of(n, frame[n].to_numpy(), profiles[n].histogram, profiles[n].categories) for n in FEATURE_NAMES
        ]
        report.predictions = drift_of("predicted mpg", frame["mpg"].to_numpy(), card.profile.predictions)
        report.outside_range_share = round(float((frame["outside_training_range"] != "").mean()), 6)
    judged = len(frame) >= thresholds.min_rows and card.profile is not None
    for drift in [*report.features, *([report.predictions] if report.predictions else [])]:
        if judged and drift.psi > thresholds.psi_alert:
            report.alerts.append(f"drift: {drift.name} PSI {drift.psi:.3f} > {thresholds.psi_alert}")
    if judged:
        report.judged.append(f"drift and extrapolation over {len(frame)} cars")
    if judged and report.outside_range_share > thresholds.outside_range_alert:
        share = report.outside_range_share
        report.alerts.append(
            f"extrapolation: {share:.1%} of cars outside the training ranges > {thresholds.outside_range_alert:.0%}"
        )
    labelled = frame.dropna(subset=["actual_mpg"]) if len(frame) else frame
    if len(labelled):
        errors = labelled["mpg"] - labelled["actual_mpg"]
        rmse = float(np.sqrt(np.mean(errors**2)))
        report.feedback = {
            "rows": len(labelled),
            "rmse": round(rmse, 6),
            "mae": round(float(np.mean(np.abs(errors))), 6),
            "bias": round(float(np.mean(errors)), 6),
            "holdout_rmse": card.metrics.holdout.rmse,
            "rmse_ratio": round(rmse / card.metrics.holdout.rmse, 6),
        }
        if len(labelled) >= thresholds.min_feedback:
            report.judged.append(f"error on {_plural(len(labelled), 'feedback report')}")
        else:
            report.notes.append(
                f"{_plural(len(labelled), 'feedback report')}, fewer than min_feedback={thresholds.min_feedback}: "
                "error not judged"
            )
        if len(labelled) >= thresholds.min_feedback and report.feedback["rmse_ratio"] > thresholds.error_ratio_alert:
            report.alerts.append(
                f"error: RMSE on feedback {rmse:.2f} mpg is {report.feedback['rmse_ratio']:.2f}x the holdout's "
                f"> {thresholds.error_ratio_alert}"
            )
    if not len(labelled):
        report.notes.append("no feedback: error not judged")
    if not metrics_url:
        report.notes.append("no --metrics-url: latency and server errors not judged")
    if metrics_url:
        report.traffic = traffic(metrics_url)
        report.judged.append(f"latency and server errors from {metrics_url}")
        p99, errors = report.traffic["p99_ms"], report.traffic["server_error_share"]
        if p99 is not None and p99 > thresholds.p99_latency_ms_alert:
            report.alerts.append(f"latency: p99 {p99:.0f} ms > {thresholds.p99_latency_ms_alert:g} ms")
        if errors > thresholds.server_error_alert:
            report.alerts.append(f"errors: {errors:.2%} of answers are 5xx > {thresholds.server_error_alert:.2%}")
    return report, frame


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _plots(report: Report, frame: pd.DataFrame) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = {}
    drifts = [*report.features, *([report.predictions] if report.predictions else [])]
    if drifts:
        fig, axes = plt.subplots(2, 4, figsize=(16, 7), dpi=90)
        for ax, drift in zip(axes.ravel(), drifts, strict=False):
            x = np.arange(len(drift.bins))
            ax.bar(x - 0.2, drift.expected, 0.4, label="training")
            ax.bar(x + 0.2, drift.served, 0.4, label="served")
            ax.set_xticks(x, drift.bins, rotation=60, fontsize=7)
            ax.set_title(f"{drift.name}: PSI {drift.psi:.2f}", fontsize=10)
        axes.ravel()[0].legend()
        plots["Served cars against the training rows (share per training decile or category)"] = _png(fig)
    labelled = frame.dropna(subset=["actual_mpg"]) if len(frame) else frame
    if len(labelled):
        fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5), dpi=90)
        errors = (labelled["mpg"] - labelled["actual_mpg"]).abs()
        times = pd.to_datetime(labelled["time"], unit="s")
        left.plot(times, errors, "o", markersize=4)
        if times.nunique() == 1:  # one moment: an hour either side, not matplotlib's default of years
            left.set_xlim(times.iloc[0] - pd.Timedelta(hours=1), times.iloc[0] + pd.Timedelta(hours=1))
        left.axhline(report.feedback["holdout_rmse"], color="grey", linewidth=1, label="holdout RMSE")
        left.set(ylabel="|predicted - actual| (mpg)", title="Error on feedback over time")
        left.legend()
        low = float(min(labelled["mpg"].min(), labelled["actual_mpg"].min()))
        high = float(max(labelled["mpg"].max(), labelled["actual_mpg"].max()))
        right.plot(labelled["actual_mpg"], labelled["mpg"], "o", markersize=4)
        right.plot([low, high], [low, high], color="grey", linewidth=1)
        right.set(xlabel="actual (mpg)", ylabel="predicted (mpg)", title="Calibration on feedback")
        right.set_aspect("equal")
        plots["Feedback: error over time and calibration"] = _png(fig)
    return plots


def as_html(report: Report, frame: pd.DataFrame) -> str:
    from html import escape

    def table(headers: list[str], rows: list[list[Any]]) -> str:
        head = "".join(f"<th>{escape(str(h))}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
        return f"<table><tr>{head}</tr>{body}</table>"

    verdict = "ALERT" if report.alerts else "no alert"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>mpg monitor report</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2rem;max-width:80rem}img{max-width:100%;height:auto}"
        "table{border-collapse:collapse;"
        "margin:1rem 0}td,th{border:1px solid #bbb;padding:.25rem .6rem;text-align:right}.alert{color:#b3261e}</style>",
        "</head><body>",
        f"<h1>Model {escape(report.model_id[:12])} ({escape(report.algorithm)}): {verdict}</h1>",
        f"<p>{report.rows} served cars {report.period}; "
        f"{report.outside_range_share:.1%} outside the training ranges.</p>",
    ]
    parts += [f"<p class='alert'>{escape(a)}</p>" for a in report.alerts]
    parts += [f"<p>judged: {escape(j)}</p>" for j in report.judged]
    parts += [f"<p>{escape(n)}</p>" for n in report.notes]
    drifts = [*report.features, *([report.predictions] if report.predictions else [])]
    if drifts:
        judged = any(j.startswith("drift") for j in report.judged)
        parts.append("<h2>Drift</h2>" if judged else "<h2>Drift (not judged: see the note above)</h2>")
        psi_header = "PSI" if judged else "PSI (not judged)"
        rows = [[d.name, f"{d.psi:.3f}", f"{d.p_value:.3g}"] for d in drifts]
        parts.append(table(["feature", psi_header, "chi-square p"], rows))
    if report.feedback:
        parts.append("<h2>Quality on feedback</h2>")
        parts.append(
            table(
                list(report.feedback), [[f"{v:.3f}" if isinstance(v, float) else v for v in report.feedback.values()]]
            )
        )
    if report.traffic:
        parts.append("<h2>Traffic</h2>")
        traffic_rows = [[k, "-" if v is None else f"{v:.4g}"] for k, v in report.traffic.items()]
        parts.append(table(["figure", "value"], traffic_rows))
    for title, png in _plots(report, frame).items():
        parts.append(f"<h2>{escape(title)}</h2><img alt='{escape(title)}' src='data:image/png;base64,{png}'>")
    parts.append("</body></html>")
    return "\n".join(parts)
