"""The monitor on the cluster: wired to the predictor's logger, fenced, alerting at params.yaml's thresholds.

No cluster runs here: the NetworkPolicies are judged by a small evaluator of the
Kubernetes rules (a pod selected by a policy of a type is isolated for that direction;
then a connection needs a rule of the source's egress and of the destination's
ingress that both match), over the objects `kustomize` renders for staging.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest
import yaml

from core.manifests import render
from training.params import load_params

NAMESPACE = "mpg-staging"


@dataclass(frozen=True)
class Pod:
    namespace: str | None  # None: outside the cluster (PostgreSQL at some address)
    labels: dict[str, str] = field(default_factory=dict)

    def __hash__(self):
        return hash((self.namespace, tuple(sorted(self.labels.items()))))


CLIENT = Pod(NAMESPACE, {"app.kubernetes.io/name": "mpg-client"})
PREDICTOR = Pod(NAMESPACE, {"serving.kserve.io/inferenceservice": "mpg", "component": "predictor"})
MONITOR = Pod(NAMESPACE, {"app.kubernetes.io/name": "mpg-monitor"})
REPORT = Pod(NAMESPACE, {"app.kubernetes.io/name": "mpg-monitor-report"})
INGRESS_CONTROLLER = Pod("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
PROMETHEUS = Pod("monitoring", {"app.kubernetes.io/name": "prometheus"})
DNS = Pod("kube-system", {"k8s-app": "kube-dns"})
MINIO = Pod("kubeflow", {"app": "minio"})
POSTGRES = Pod(None)


def _matches(selector: dict | None, labels: dict[str, str]) -> bool:
    assert not (selector or {}).get("matchExpressions"), "the evaluator reads matchLabels only"
    return all(labels.get(k) == v for k, v in ((selector or {}).get("matchLabels") or {}).items())


def _peer_matches(peer: dict, policy_namespace: str, pod: Pod) -> bool:
    if "ipBlock" in peer:
        return pod.namespace is None
    if pod.namespace is None:
        return False
    if "namespaceSelector" in peer:
        if not _matches(peer["namespaceSelector"], {"kubernetes.io/metadata.name": pod.namespace}):
            return False
    elif pod.namespace != policy_namespace:
        return False
    return _matches(peer.get("podSelector"), pod.labels)


def _direction_allows(policies, subject: Pod, other: Pod, port: int, kind: str) -> bool:
    key, peers_key = ("egress", "to") if kind == "Egress" else ("ingress", "from")
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == subject.namespace
        and kind in p["spec"]["policyTypes"]
        and _matches(p["spec"]["podSelector"], subject.labels)
    ]
    if subject.namespace != NAMESPACE or not selecting:
        return True  # pods of other namespaces are not ours to fence here
    for policy in selecting:
        for rule in policy["spec"].get(key) or []:
            peers = rule.get(peers_key)
            ports = [p["port"] for p in rule.get("ports") or []]
            if (not peers or any(_peer_matches(peer, policy["metadata"]["namespace"], other) for peer in peers)) and (
                not ports or port in ports
            ):
                return True
    return False


def allowed(policies, source: Pod, destination: Pod, port: int) -> bool:
    return _direction_allows(policies, source, destination, port, "Egress") and _direction_allows(
        policies, destination, source, port, "Ingress"
    )


@pytest.fixture(scope="module")
def staging(root) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in render(root / "k8s" / "overlays" / "staging")}


@pytest.fixture(scope="module")
def policies(staging):
    return [o for (kind, _), o in staging.items() if kind == "NetworkPolicy"]


LOOP = [  # every connection the product makes
    (INGRESS_CONTROLLER, CLIENT, 8080),
    (CLIENT, PREDICTOR, 8080),
    (CLIENT, MONITOR, 8080),  # /feedback
    (PREDICTOR, MONITOR, 8080),  # the payload logger
    (PREDICTOR, MINIO, 9000),
    (MONITOR, POSTGRES, 5432),
    (REPORT, POSTGRES, 5432),
    (REPORT, MINIO, 9000),
    (REPORT, PREDICTOR, 8080),  # /metrics
    (PROMETHEUS, PREDICTOR, 8080),
    (PROMETHEUS, MONITOR, 8080),
    *((pod, DNS, 53) for pod in (CLIENT, PREDICTOR, MONITOR, REPORT)),
]
FENCED = [  # connections nothing needs
    (INGRESS_CONTROLLER, MONITOR, 8080),  # feedback arrives through the client's one route
    (INGRESS_CONTROLLER, PREDICTOR, 8080),
    (CLIENT, POSTGRES, 5432),
    (PREDICTOR, POSTGRES, 5432),
    (CLIENT, MINIO, 9000),
    (MONITOR, MINIO, 9000),
    (MONITOR, PREDICTOR, 8080),
    (REPORT, MONITOR, 8080),
    (PROMETHEUS, CLIENT, 8080),
]


@pytest.mark.parametrize(("source", "destination", "port"), LOOP)
def test_the_network_policies_allow_every_connection_of_the_loop(policies, source, destination, port):
    assert allowed(policies, source, destination, port)


@pytest.mark.parametrize(("source", "destination", "port"), FENCED)
def test_the_network_policies_fence_everything_else(policies, source, destination, port):
    assert not allowed(policies, source, destination, port)


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
    assert 'cronjob="mpg-monitor-report"' in rules["MpgMonitorReportFailed"]["expr"]


def test_the_report_job_fails_on_an_alert_once(staging):
    """Exit 4 fails the Job (the alert fires); a retry would only repeat the same verdict."""
    job = staging[("CronJob", "mpg-monitor-report")]["spec"]
    assert job["jobTemplate"]["spec"]["backoffLimit"] == 0 and job["concurrencyPolicy"] == "Forbid"
    args = job["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["monitor", "report"] and "--metrics-url=http://mpg-predictor/metrics" in args


def test_the_documents_parse_as_yaml_with_the_metric_names_the_code_exports(root):
    """The rules query the metric names serving/server.py and monitoring/service.py define."""
    text = (root / "k8s" / "base" / "monitor" / "prometheus.yaml").read_text()
    list(yaml.safe_load_all(text))
    code = (root / "serving" / "server.py").read_text() + (root / "monitoring" / "service.py").read_text()
    for metric in set(re.findall(r"\b(mpg_[a-z_]+?)(?:_total|_bucket)\b", text)):
        assert f'"{metric}"' in code, metric
