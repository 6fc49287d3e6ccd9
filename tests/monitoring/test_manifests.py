"""The monitor on the cluster: wired to the predictor's logger, alerting at params.yaml's thresholds.

Its network fences are judged with every other flow, over the pods KServe creates, in
tests/gitops/test_controllers.py.
"""

from __future__ import annotations

import re

import pytest
import yaml

from infra.manifests import render
from training.params import load_params

NAMESPACE = "mpg-staging"


@pytest.fixture(scope="module")
def staging(root) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in render(root / "k8s" / "overlays" / "staging")}


def test_the_predictors_logger_reaches_the_monitor_service(staging):
    logger = staging[("InferenceService", "mpg")]["spec"]["predictor"]["logger"]
    assert logger["mode"] == "all"
    host = re.fullmatch(r"http://([a-z0-9-]+)/", logger["url"])[1]
    service = staging[("Service", host)]
    deployment = staging[("Deployment", "mpg-monitor")]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["port"] == 80
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    port = next(p for p in container["ports"] if p["name"] == service["spec"]["ports"][0]["targetPort"])
    assert f"--port={port['containerPort']}" in container["args"] and container["args"][:2] == ["monitor", "serve"]
    assert deployment["spec"]["replicas"] >= 2, "one replica loses the events posted while it restarts"


def test_the_database_url_comes_from_a_secret_that_is_not_in_git(staging):
    monitor = staging[("Deployment", "mpg-monitor")]["spec"]
    report = staging[("CronJob", "mpg-monitor-report")]["spec"]["jobTemplate"]["spec"]
    for pod in (monitor["template"]["spec"], report["template"]["spec"]):
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        assert env["MLOPS_MONITOR_DB"]["valueFrom"]["secretKeyRef"] == {"name": "mpg-monitor-db", "key": "url"}
    assert not [key for key in staging if key[0] == "Secret"]


def test_the_alert_thresholds_are_those_of_params_yaml(root, staging):
    thresholds = load_params(root / "params.yaml").monitor
    rules = {r["alert"]: r for g in staging[("PrometheusRule", "mpg-model")]["spec"]["groups"] for r in g["rules"]}
    slow = re.search(r"histogram_quantile\(0\.99,.*\) > ([\d.]+)\s*$", rules["MpgPredictorSlow"]["expr"], re.S)
    assert float(slow[1]) * 1000 == thresholds.p99_latency_ms_alert
    errors = re.search(r"> ([\d.]+)\s*$", rules["MpgPredictorErrors"]["expr"])
    assert float(errors[1]) == thresholds.server_error_alert
    assert rules["MpgDriftAlert"]["expr"].startswith("max by (namespace) (mpg_monitor_report_alerts) > 0")
    assert "mpg_monitor_report_timestamp_seconds" in rules["MpgMonitorReportMissing"]["expr"]


def test_the_report_job_records_its_alerts_and_runs_once(staging):
    """--record: the alerts go to the monitor's database (Prometheus pages through its /metrics) and the Job
    succeeds; a failed Job would turn the CronJob Degraded in Argo CD (tests/cluster). No retry: a second run
    would only repeat the same verdict."""
    job = staging[("CronJob", "mpg-monitor-report")]["spec"]
    assert job["jobTemplate"]["spec"]["backoffLimit"] == 0 and job["concurrencyPolicy"] == "Forbid"
    args = job["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["monitor", "report"] and "--metrics-url=http://mpg-predictor-pods:8080/metrics" in args
    assert "--record" in args


def test_the_documents_parse_as_yaml_with_the_metric_names_the_code_exports(root):
    """The rules query the metric names serving/server.py and monitoring/service.py define."""
    text = (root / "k8s" / "base" / "monitor" / "prometheus.yaml").read_text()
    list(yaml.safe_load_all(text))
    code = (root / "serving" / "server.py").read_text() + (root / "monitoring" / "service.py").read_text()
    for metric in set(re.findall(r"\b(mpg_[a-z_]+?)(?:_total|_bucket)\b", text)):
        assert f'"{metric}"' in code, metric


@pytest.mark.parametrize("env", ["staging", "production"])
def test_the_daily_report_judges_the_model_git_names_and_follows_a_bump(root, tmp_path, env):
    """The report used to judge the model of the latest stored event: one forged event with a valid-looking
    unknown model id, dated a few minutes ahead, made every CronJob run fail until newer traffic came. Each
    overlay now copies its InferenceService's storageUri into the report's --model (a replacement), so a bump
    moves both and no event chooses."""
    import shutil

    from core.uri import parse_store_uri
    from infra.overlays import model_file, with_model_uri

    def report_model(tree) -> str:
        objects = {(o["kind"], o["metadata"]["name"]): o for o in render(tree)}
        isvc = objects[("InferenceService", "mpg")]["spec"]["predictor"]["model"]["storageUri"]
        args = objects[("CronJob", "mpg-monitor-report")]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        [model] = [a.removeprefix("--model=") for a in args["containers"][0]["args"] if a.startswith("--model=")]
        assert model == isvc and "set-by-overlay" not in model
        return model

    report_model(root / "k8s" / "overlays" / env)
    project = tmp_path / "project"
    shutil.copytree(root / "k8s", project / "k8s")
    bumped = parse_store_uri(f"s3://mpg-mlops/models/mpg/{'ab' * 32}/")
    path = project / model_file(env)
    path.write_text(with_model_uri(path.read_text(), bumped))
    assert report_model(project / "k8s" / "overlays" / env) == str(bumped)


def test_the_report_reads_every_predictor_pod_on_the_model_servers_port(staging):
    """The platform review: the report read /metrics through mpg-predictor, so one random pod answered (and
    through KServe's agent, whose payload log then carried the scrape). A headless Service names every pod."""
    service = staging[("Service", "mpg-predictor-pods")]["spec"]
    isvc = staging[("InferenceService", "mpg")]
    assert service["clusterIP"] == "None"
    assert service["ports"] == [{"name": "metrics", "port": 8080, "targetPort": 8080}]
    assert service["selector"] == {"serving.kserve.io/inferenceservice": isvc["metadata"]["name"]}
