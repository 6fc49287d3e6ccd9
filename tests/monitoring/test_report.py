"""`mlops monitor report`: drift, quality and traffic against the model card; exit 4 on an alert."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest
import sqlalchemy as sa

from core.features import FEATURE_NAMES
from core.model_card import load_model
from monitoring import db
from monitoring.report import _quantile_from_buckets, psi
from tests.conftest import one_line_error, run_mlops
from tests.monitoring.conftest import sample, served
from tests.serving.conftest import running_server


@pytest.fixture
def world(tmp_path, trained_dir, dataset):
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    model, card = load_model(trained_dir)
    return url, db.connect(url), model, card, dataset


def report(url, trained_dir, tmp_path, *args):
    out = tmp_path / "report.json"
    result = run_mlops("monitor", "report", "--db", url, "--model", trained_dir, "--out", out, *args)
    return result, (json.loads(out.read_text()) if out.exists() else None)


def test_cars_like_the_training_data_raise_no_alert(world, trained_dir, tmp_path):
    url, engine, model, card, dataset = world
    cars, actual = sample(dataset, 400, seed=1)
    served(engine, model, card, cars, "calm", actual[:60])
    result, figures = report(url, trained_dir, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert figures["rows"] == 400 and figures["alerts"] == []
    assert max(f["psi"] for f in figures["features"]) < 0.1 and figures["predictions"]["psi"] < 0.1
    assert figures["feedback"]["rows"] == 60 and figures["feedback"]["rmse_ratio"] < 1.5


def test_a_shifted_batch_raises_drift_alerts_and_exits_4(world, trained_dir, tmp_path):
    url, engine, model, card, dataset = world
    cars, _ = sample(dataset, 400, seed=2)
    cars[:, FEATURE_NAMES.index("weight")] *= 1.45
    cars[:, FEATURE_NAMES.index("model_year")] = 1995
    served(engine, model, card, cars, "shifted")
    result, figures = report(url, trained_dir, tmp_path)
    assert result.returncode == 4, result.stdout + result.stderr
    drifted = {alert.split()[1] for alert in figures["alerts"] if alert.startswith("drift:")}
    assert {"weight", "model_year"} <= drifted and "cylinders" not in drifted
    assert figures["outside_range_share"] > 0.9 and any(a.startswith("extrapolation") for a in figures["alerts"])
    assert "ALERT drift: weight PSI" in result.stdout


def test_feedback_much_worse_than_the_holdout_raises_an_error_alert(world, trained_dir, tmp_path):
    url, engine, model, card, dataset = world
    cars, actual = sample(dataset, 200, seed=3)
    served(engine, model, card, cars, "wrong", actual * 0.7)  # cars doing 30 % worse than the model thinks
    result, figures = report(url, trained_dir, tmp_path)
    assert result.returncode == 4
    assert figures["feedback"]["rmse_ratio"] > 1.5 and any(a.startswith("error:") for a in figures["alerts"])


def test_too_few_cars_are_not_judged_for_drift(world, trained_dir, tmp_path):
    url, engine, model, card, dataset = world
    cars, _ = sample(dataset, 20, seed=4)
    cars[:, FEATURE_NAMES.index("weight")] *= 2
    served(engine, model, card, cars, "few")
    result, figures = report(url, trained_dir, tmp_path)
    assert result.returncode == 0 and any("fewer than min_rows" in note for note in figures["notes"])
    assert "20 served cars of model" in result.stdout and "over all recorded traffic" in result.stdout
    assert "1970" not in result.stdout, "no --since is all traffic, not the epoch"
    notes = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("note:")]
    assert any("drift not judged" in n for n in notes) and any("error not judged" in n for n in notes)
    assert any("latency and server errors not judged" in n for n in notes), "the console says what was not judged"
    recent, _ = report(url, trained_dir, tmp_path, "--since", "5m")
    assert "since 20" in recent.stdout and "UTC" in recent.stdout
    page = tmp_path / "few.html"
    assert run_mlops("monitor", "report", "--db", url, "--model", trained_dir, "--out", page).returncode == 0
    html = page.read_text()
    assert "<h2>Drift (not judged" in html and "<th>PSI (not judged)</th>" in html, "figures shown, marked unjudged"


def test_a_database_that_does_not_exist_is_an_error_not_an_empty_report(trained_dir, tmp_path):
    line = one_line_error(report(f"sqlite:///{tmp_path / 'typo.db'}", trained_dir, tmp_path)[0])
    assert "no monitor database at" in line and not (tmp_path / "typo.db").exists()


def test_the_html_report_fits_a_1200_px_window_in_chromium(world, trained_dir, tmp_path, browser):
    url, engine, model, card, dataset = world
    cars, actual = sample(dataset, 150, seed=6)
    served(engine, model, card, cars, "wide", actual[:30])
    out = tmp_path / "report.html"
    assert run_mlops("monitor", "report", "--db", url, "--model", trained_dir, "--out", out).returncode == 0
    browser.set_window_size(1200, 900)
    browser.get(out.as_uri())
    overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow} px"
    widths = browser.execute_script("return [...document.images].map(i => i.getBoundingClientRect().right)")
    assert len(widths) == 2 and max(widths) <= browser.execute_script("return window.innerWidth")


def test_html_report_has_the_plots_and_traffic_from_the_predictor(world, trained_dir, tmp_path):
    url, engine, model, card, dataset = world
    cars, actual = sample(dataset, 150, seed=5)
    served(engine, model, card, cars, "html", actual[:30])
    with running_server(str(trained_dir), tmp_path) as (base, _, _log):
        for _ in range(20):
            httpx.post(f"{base}/v1/models/mpg:predict", json={"instances": [cars[0].tolist()]})
        for _ in range(5):
            httpx.post(f"{base}/v1/models/mpg:predict", json={"instances": [[1]]})
        out = tmp_path / "report.html"
        result = run_mlops(
            "monitor", "report", "--db", url, "--model", trained_dir, "--out", out, "--metrics-url", f"{base}/metrics"
        )
    assert result.returncode == 0, result.stderr
    html = out.read_text()
    assert html.count("<img") == 2 and "Drift" in html and "Quality on feedback" in html and "Traffic" in html
    json_out = tmp_path / "r.json"
    with running_server(str(trained_dir), tmp_path) as (base, _, _log):
        for _ in range(8):
            httpx.post(f"{base}/v1/models/mpg:predict", json={"instances": [cars[0].tolist()]})
        httpx.post(f"{base}/v1/models/mpg:predict", json={"instances": [[1]]})
        run_mlops(
            "monitor",
            "report",
            "--db",
            url,
            "--model",
            trained_dir,
            "--out",
            json_out,
            "--metrics-url",
            f"{base}/metrics",
        )
    traffic = json.loads(json_out.read_text())["traffic"]
    assert traffic["requests"] == 9 and traffic["client_error_share"] == pytest.approx(1 / 9)
    assert traffic["server_error_share"] == 0 and 0 < traffic["p99_ms"] < 1000


def test_traffic_is_every_predictors_added_up(world, trained_dir, tmp_path):
    """Two predictors (two pods of one InferenceService), each read, their counts and latencies added up."""
    url, engine, model, card, dataset = world
    cars, _ = sample(dataset, 10, seed=8)
    served(engine, model, card, cars, "two-pods")
    json_out = tmp_path / "two.json"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        running_server(str(trained_dir), tmp_path / "a") as (first, _, _a),
        running_server(str(trained_dir), tmp_path / "b") as (second, _, _b),
    ):
        for base, count in ((first, 3), (second, 5)):
            for _ in range(count):
                httpx.post(f"{base}/v1/models/mpg:predict", json={"instances": [cars[0].tolist()]})
        httpx.post(f"{second}/v1/models/mpg:predict", json={"instances": [[1]]})
        result = run_mlops("monitor", "report", "--db", url, "--model", trained_dir, "--out", json_out,
                           "--metrics-url", f"{first}/metrics", "--metrics-url", f"{second}/metrics")  # fmt: skip
    assert result.returncode in (0, 4), result.stderr
    traffic = json.loads(json_out.read_text())["traffic"]
    assert traffic["predictors"] == 2 and traffic["requests"] == 9
    assert traffic["client_error_share"] == pytest.approx(1 / 9) and 0 < traffic["p99_ms"] < 1000


def test_a_name_with_several_addresses_is_read_at_each(monkeypatch):
    """A headless Service's name resolves to every pod. No cluster DNS here: the resolver answers as CoreDNS
    does for mpg-predictor-pods (one A record per ready pod); an address or a one-address name is kept."""
    import socket

    from monitoring.report import pod_urls

    def resolve(host, port, family=0, kind=0, *rest):
        pods = {"mpg-predictor-pods": ["10.1.0.7", "10.1.0.5", "10.1.0.7"], "one": ["10.1.0.9"]}[host]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in pods]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    assert pod_urls("http://mpg-predictor-pods:8080/metrics") == [
        "http://10.1.0.5:8080/metrics", "http://10.1.0.7:8080/metrics",
    ]  # fmt: skip
    assert pod_urls("http://one:8080/metrics") == ["http://one:8080/metrics"]
    assert pod_urls("http://127.0.0.1:8080/metrics") == ["http://127.0.0.1:8080/metrics"]


def test_without_a_model_the_one_recorded_with_the_events_is_reported(world, trained_dir, tmp_path, monkeypatch):
    url, engine, model, card, dataset = world
    out = tmp_path / "r.json"
    line = one_line_error(run_mlops("monitor", "report", "--db", url, "--out", out))
    assert "no prediction is recorded yet" in line
    cars, _ = sample(dataset, 10, seed=6)
    served(engine, model, card, cars, "latest")
    with engine.begin() as connection:  # a row no ingestion would store now: no id, a time in year 9999
        row = {c.name: 0.0 for c in db.predictions.columns} | {
            "request_id": "bogus", "row": 0, "model_id": "z" * 64, "service": "mpg", "namespace": "x",
            "time": 253402214400.0, "outside_training_range": "",
        }  # fmt: skip
        connection.execute(sa.insert(db.predictions).values(**row))
    line = one_line_error(
        run_mlops("monitor", "report", "--db", url, "--out", out, env={"MLOPS_STORE_ROOT": str(tmp_path / "empty")})
    )
    assert f"no model at s3://mpg-mlops/models/mpg/{card.id}/" in line


def test_psi_and_histogram_quantiles():
    assert psi(np.full(10, 0.1), np.full(10, 0.1)) == 0.0
    assert psi(np.array([0.5, 0.5]), np.array([0.1, 0.9])) > 0.25
    buckets = [(0.001, 10.0), (0.01, 90.0), (0.1, 100.0), (float("inf"), 100.0)]
    assert _quantile_from_buckets(buckets, 0.5) == pytest.approx(0.001 + 0.009 * (40 / 80))
    assert _quantile_from_buckets(buckets, 0.99) == pytest.approx(0.01 + 0.09 * (9 / 10))
    assert _quantile_from_buckets([], 0.5) is None


def test_a_metrics_url_that_is_not_the_predictors_is_one_line(world, trained_dir, tmp_path, root):
    """The page's port instead of the predictor's: its nginx answers /metrics with a 404 (it once answered the page
    with a 200, and the report died in the Prometheus parser); any other server's text is named, not parsed."""
    from infra.http import free_port
    from infra.nginx import running_nginx

    url, engine, model, card, dataset = world
    cars, _ = sample(dataset, 10, seed=7)
    served(engine, model, card, cars, "wrong-url")
    out = tmp_path / "r.json"
    report = ("monitor", "report", "--db", url, "--model", trained_dir, "--out", out, "--metrics-url")
    with running_server(str(trained_dir), tmp_path) as (base, _, _log):
        fresh = run_mlops(*report[:-2], tmp_path / "fresh.json", "--metrics-url", f"{base}/metrics")
        assert fresh.returncode == 0, "a fresh predictor's metrics are read"
        page = free_port()
        with running_nginx(root / "k8s/base/client", base, page, "http://127.0.0.1:9"):
            assert httpx.get(f"http://127.0.0.1:{page}/metrics").status_code == 404
            assert httpx.get(f"http://127.0.0.1:{page}/").status_code == 200
            line = one_line_error(run_mlops(*report, f"http://127.0.0.1:{page}/metrics"))
            assert line.startswith(f"Error: cannot read the predictor's metrics at http://127.0.0.1:{page}/metrics")
            assert "it answered 404 Not Found" in line
            line = one_line_error(run_mlops(*report, f"http://127.0.0.1:{page}/index.html"))
            assert "did not answer Prometheus text" in line and "point --metrics-url at the predictor's" in line
    other = ThreadingHTTPServer(("127.0.0.1", 0), _OtherMetrics)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        line = one_line_error(run_mlops(*report, f"http://127.0.0.1:{other.server_port}/metrics"))
    finally:
        other.shutdown()
    assert "has no mpg_http_requests metric: it is not this project's predictor" in line
    assert not out.exists()


class _OtherMetrics(BaseHTTPRequestHandler):
    """Some other exporter: valid Prometheus text, none of the predictor's metrics."""

    def do_GET(self):  # noqa: N802
        body = b"# TYPE up gauge\nup 1\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass
