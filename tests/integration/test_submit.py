"""`mlops pipeline submit` through kfp.Client against a KFP API STAND-IN (see kfp_standin.py)."""

from __future__ import annotations

import yaml
from click.testing import CliRunner

from mlops.cli import main
from pipelines.compile import IR_FILE
from tests.conftest import one_line_error, run_mlops
from tests.integration.kfp_standin import KfpStandIn


def test_submit_creates_the_experiment_and_a_run_of_the_compiled_pipeline(root, tmp_path, monkeypatch):
    monkeypatch.delenv("MLOPS_KFP_TOKEN", raising=False)
    token = tmp_path / "token"
    token.write_text("sa-token-123\n")
    with KfpStandIn() as kfp:
        result = CliRunner().invoke(
            main,
            [
                "pipeline",
                "submit",
                "--host",
                kfp.url,
                "--token-file",
                str(token),
                "--experiment",
                "nightly",
                "--param",
                "data_revision=main",
                "--param",
                "params_overrides=[train.cv_folds=3]",
            ],
        )
        assert result.exit_code == 0, result.output
        assert [r for r in kfp.requests if r["authorization"] != "Bearer sa-token-123"] == []
        assert list(kfp.experiments) == ["nightly"]
        [run] = kfp.runs
        assert run["run_id"] in result.output
        assert run["experiment_id"] == kfp.experiments["nightly"]["experiment_id"]
        committed = next(yaml.safe_load_all((root / IR_FILE).read_text()))
        assert run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"] == committed["pipelineInfo"]
        assert "kubernetes" in run["pipeline_spec"]["platform_spec"]["platforms"]  # secret references travel too
        assert run["runtime_config"]["parameters"] == {
            "data_revision": "main",
            "params_overrides": ["train.cv_folds=3"],
        }

        again = CliRunner().invoke(
            main, ["pipeline", "submit", "--host", kfp.url, "--token-file", str(token), "--experiment", "nightly"]
        )
        assert again.exit_code == 0 and len(kfp.experiments) == 1 and len(kfp.runs) == 2


def test_submit_rejects_unknown_parameters_before_calling_the_server(tmp_path):
    with KfpStandIn() as kfp:
        result = CliRunner().invoke(main, ["pipeline", "submit", "--host", kfp.url, "--param", "colour=blue"])
        assert result.exit_code == 2 and "unknown pipeline parameter(s) colour" in result.output
        assert kfp.requests == []


def test_unreachable_server_is_a_clear_error(tmp_path):
    line = one_line_error(run_mlops("pipeline", "submit", "--host", "http://127.0.0.1:9"))
    assert "http://127.0.0.1:9 cannot be reached" in line and "check --host" in line


def test_multi_user_submit_names_the_profile_and_stops_the_sidecar_however_it_ends(tmp_path):
    """Multi-user KFP takes the profile namespace on each call (kubeflow/pipelines#12088); the Istio sidecar
    beside the nightly submitter is stopped after the submit, or its Job never completes (istio/istio#11659).
    The sidecar's pilot-agent is a stand-in here: a loopback server that records the quit call."""
    import http.server
    import threading

    from pipelines import submit as submit_module

    quits = []

    class Agent(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            quits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    agent = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Agent)
    threading.Thread(target=agent.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{agent.server_address[1]}/quitquitquit"
    original = submit_module.SIDECAR_QUIT
    submit_module.SIDECAR_QUIT = url
    try:
        with KfpStandIn() as kfp:
            args = ["pipeline", "submit", "--host", kfp.url, "--namespace", "team-a", "--stop-istio-sidecar"]
            result = CliRunner().invoke(main, args)
            assert result.exit_code == 0, result.output
            assert kfp.experiments["mpg-production"]["namespace"] == "team-a"
            failed = CliRunner().invoke(main, [*args, "--param", "colour=blue"])
            assert failed.exit_code == 2
        assert quits == ["/quitquitquit", "/quitquitquit"], "stopped after success and after failure"
    finally:
        submit_module.SIDECAR_QUIT = original
        agent.shutdown()


def test_a_backend_older_than_the_floor_is_refused_naming_both_versions(tmp_path):
    """Drivers before KFP 2.5 reject fields the SDK's compiler adds (kubeflow/pipelines#11662): refused before a
    run is created, not a run that fails in its first step."""
    with KfpStandIn(version="2.4.1") as kfp:
        line = one_line_error(run_mlops("pipeline", "submit", "--host", kfp.url))
        assert "runs Kubeflow Pipelines 2.4.1, older than 2.5" in line and "upgrade Kubeflow Pipelines" in line
        assert not [r for r in kfp.requests if r["method"] == "POST"]
    with KfpStandIn(version="2.15.0") as kfp:
        assert run_mlops("pipeline", "submit", "--host", kfp.url).returncode == 0 and len(kfp.runs) == 1


def test_a_multi_user_backend_needs_the_profile_which_the_environment_can_give(tmp_path):
    """CI's submit-training names no --namespace: MLOPS_KFP_NAMESPACE (a CI variable) gives the profile."""
    with KfpStandIn(multi_user=True) as kfp:
        line = one_line_error(run_mlops("pipeline", "submit", "--host", kfp.url, env={"MLOPS_KFP_NAMESPACE": ""}))
        assert "is multi-user Kubeflow Pipelines" in line and "MLOPS_KFP_NAMESPACE" in line
        ok = run_mlops("pipeline", "submit", "--host", kfp.url, env={"MLOPS_KFP_NAMESPACE": "team-a"})
        assert ok.returncode == 0, ok.stderr
        assert kfp.experiments["mpg-production"]["namespace"] == "team-a"
