"""The error contract, through the real `mlops` script: one stderr line naming cause and fix, no traceback,
exit 1 for an error and 2 for a usage error."""

from __future__ import annotations

import http.server
import socket
import subprocess
import threading
import time

import pytest

from infra.http import free_port
from tests.conftest import MLOPS, SEED_DATA, one_line_error, run_mlops

FAST = ("--set", "train.candidates=[linear]")


@pytest.fixture
def semicolon_csv(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text(SEED_DATA.read_text().replace(",", ";"))
    return path


@pytest.fixture
def columns_missing_csv(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("make,colour\nford,red\n")
    return path


@pytest.mark.parametrize("command", ["validate", "predict", "train", "evaluate"])
def test_a_semicolon_separated_file_is_named_as_such(command, semicolon_csv, trained_dir, tmp_path):
    args = {
        "validate": ("data", "validate", semicolon_csv),
        "predict": ("predict", "--model", trained_dir, "--input", semicolon_csv, "--output", tmp_path / "out.csv"),
        "train": ("train", "--out", tmp_path / "m", "--data", semicolon_csv, *FAST),
        "evaluate": ("evaluate", "--model", trained_dir, "--data", semicolon_csv, "--out", tmp_path / "r"),
    }[command]
    line = one_line_error(run_mlops(*args))
    assert "separates its columns with semicolons" in line and "save it with commas" in line
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "m").exists()


@pytest.mark.parametrize("command", ["predict", "train", "evaluate"])
def test_a_file_without_the_feature_columns_names_them(command, columns_missing_csv, trained_dir, tmp_path):
    args = {
        "predict": ("predict", "--model", trained_dir, "--input", columns_missing_csv, "--output", tmp_path / "o.csv"),
        "train": ("train", "--out", tmp_path / "m", "--data", columns_missing_csv, *FAST),
        "evaluate": ("evaluate", "--model", trained_dir, "--data", columns_missing_csv, "--out", tmp_path / "r"),
    }[command]
    missing = "cylinders, displacement, horsepower, weight, acceleration, model_year, origin"
    missing += "" if command == "predict" else ", mpg"
    # the whole line: a substring would pass the tuple repr of (message, report) this printed once
    assert one_line_error(run_mlops(*args)) == (
        f"Error: {columns_missing_csv} lacks the column(s) {missing} (its columns: make, colour); name them as the "
        "raw data (cyl, dpl, hp, wght, acc, year, org, mpg) or canonically (cylinders, ..., model_year, origin, mpg)"
    )


def test_validate_reports_missing_columns_by_name_without_a_traceback(columns_missing_csv):
    result = run_mlops("data", "validate", columns_missing_csv)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "header, column cylinders: column is missing (raw name cyl)" in result.stdout


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("train", "--out", "/proc/model", "--data", SEED_DATA, *FAST), "/proc/model"),
        (("data", "validate", SEED_DATA, "--report", "/proc/sys/report.json"), "/proc/sys/report.json"),
        (("data", "validate", SEED_DATA, "--report", "/usr"), "is a directory"),
        (("data", "validate", SEED_DATA, "--report", "/nonexistent-folder/report.json"), "does not exist"),
    ],
    ids=["train-out", "report-unwritable", "report-directory", "report-missing-folder"],
)
def test_an_output_path_that_cannot_be_written_is_one_line(args, named):
    assert named in one_line_error(run_mlops(*args))


def test_predict_output_cases(trained_dir, tmp_path):
    clean = tmp_path / "cars.csv"
    clean.write_text("cyl,dpl,hp,wght,acc,year,org\n4,97,88,2130,14.5,70,3\n")
    base = ("predict", "--model", trained_dir, "--input", clean)
    assert "is a directory" in one_line_error(run_mlops(*base, "--output", tmp_path))
    assert "does not exist; create it first" in one_line_error(run_mlops(*base, "--output", tmp_path / "no" / "o.csv"))
    assert not (tmp_path / "no").exists(), "no folder is created silently"


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("train.svr.c=[-1]", "--set train.svr.c=[-1]: train.svr.c.0: Input should be greater than 0"),
        ("train.nonexistent=1", "--set train.nonexistent=1: train.nonexistent: Extra inputs are not permitted"),
        ("train.cv_folds=100000", "train.cv_folds=100000 is more than the"),
        ("train.candidates=[forest]", "--set train.candidates=[forest]: train.candidates.0"),
    ],
)
def test_a_bad_override_names_the_set_argument_not_params_yaml(override, named, tmp_path):
    line = one_line_error(run_mlops("train", "--out", tmp_path / "m", "--data", SEED_DATA, "--set", override))
    assert named in line and not (tmp_path / "m").exists()


def test_serve_refuses_a_file_as_a_model_directory():
    line = one_line_error(run_mlops("serve", "--model-uri", "/etc/passwd"), exit_code=2)
    assert "/etc/passwd is not a directory" in line


@pytest.fixture
def busy_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    "args",
    [("serve", "--model-uri"), ("client", "--python"), ("client",)],
    ids=["serve", "client-python", "client-nginx"],
)
def test_a_busy_port_is_one_line_before_any_work(args, busy_port, trained_dir):
    args = (*args, trained_dir) if args[-1] == "--model-uri" else args
    line = one_line_error(run_mlops(*args, "--port", busy_port))
    assert f"cannot listen on 127.0.0.1:{busy_port}: Address already in use" in line


def test_submit_to_a_server_that_is_not_kfp_is_one_line_within_seconds(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    started = time.monotonic()
    result = run_mlops("pipeline", "submit", "--host", f"http://127.0.0.1:{server.server_address[1]}")
    server.shutdown()
    assert time.monotonic() - started < 10
    line = one_line_error(result)
    assert "is not a Kubeflow Pipelines API server" in line and "404" in line
    assert "FutureWarning" not in result.stderr


def test_serve_env_on_a_fresh_store_says_at_start_how_to_get_the_model(tmp_path, root):
    """No traceback per request: one line at start naming the missing model and the fix; the server stays up."""
    port = free_port()
    env_vars = {"MLOPS_STORE_ROOT": str(tmp_path / "store"), "MLOPS_CACHE_DIR": str(tmp_path / "cache")}
    import os

    process = subprocess.Popen(
        [str(MLOPS), "serve", "--env", "staging", "--port", str(port)],
        cwd=root,
        env={**os.environ, **env_vars},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        import httpx

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                live = httpx.get(f"http://127.0.0.1:{port}/v2/health/live", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        for _ in range(5):
            assert (
                httpx.post(f"http://127.0.0.1:{port}/v1/models/mpg:predict", json={"instances": []}).status_code == 503
            )
        assert live.status_code == 503 and "nothing was published there" in live.json()["error"]
    finally:
        process.terminate()
        log = process.communicate(timeout=30)[1]
    assert log.count("NOT loaded") == 1 and "mlops data pull" in log and "Traceback" not in log


def test_an_unknown_tree_is_a_usage_error_naming_the_short_forms():
    line = one_line_error(run_mlops("manifests", "build", "prod"), 2)
    assert "unknown tree 'prod'" in line and "staging, production" in line


@pytest.mark.parametrize(
    ("param", "named"),
    [
        ("params_overrides={a: 1}", "params_overrides must be a list"),
        ("params_overrides=[train.nope=1]", "train.nope"),
        ("open_merge_request=maybe", "open_merge_request must be true or false"),
        ("nosuch=1", "unknown pipeline parameter(s) nosuch"),
        ("train.cv_folds=3", "params.yaml values go in params_overrides: params_overrides=[train.cv_folds=3]"),
    ],
)
def test_a_bad_pipeline_parameter_is_a_usage_error_before_anything_runs(param, named):
    result = run_mlops("pipeline", "run", "--param", param)
    assert named in one_line_error(result, 2)
    assert result.stdout == "", "nothing started (it used to say 'running ...' first)"


def test_a_gate_report_that_is_not_one_is_a_usage_error(tmp_path):
    uri = "s3://mpg-mlops/models/mpg/" + "0" * 64 + "/"
    (tmp_path / "notjson").write_text("notjson")
    (tmp_path / "wrong.json").write_text('{"passed": true, "rules": [{"name": 1}]}')
    for path, named in ((tmp_path / "notjson", "is not JSON"), (tmp_path / "wrong.json", "rules.0.name")):
        line = one_line_error(
            run_mlops("gitops", "bump", "--env", "staging", "--model-uri", uri, "--gate-report", path), 2
        )
        assert named in line


BUG = """
import click, sys
from mlops.cli import main

@main.command("bug")
def bug():
    {}["missing"]

sys.argv = ["mlops", "bug"]
main()
"""


def test_an_unexpected_error_is_one_line_and_its_traceback_is_there_on_request():
    """The last resort, in the real group: a bug is exit 1, one line; MLOPS_DEBUG=1 shows the traceback."""
    import os
    import sys

    run = lambda **env: subprocess.run(  # noqa: E731
        [sys.executable, "-c", BUG], capture_output=True, text=True, env={**os.environ, **env}, timeout=60
    )
    line = one_line_error(run())
    assert "unexpected KeyError" in line and "MLOPS_DEBUG=1" in line
    debug = run(MLOPS_DEBUG="1")
    assert debug.returncode == 1 and "Traceback" in debug.stderr


# The first hour's review: each of these ended in another tool's words (nginx's `invalid port in upstream
# "None:None"`, a missing model.json, a missing branch) instead of a usage error naming the forms.
@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("client", "--predictor", "localhost:8080"),
         "Error: Invalid value for '--predictor': 'localhost:8080' is not a URL of the form http://HOST:PORT "
         "(see 'mlops client --help')"),
        (("client", "--monitor", "http://127.0.0.1:port"),
         "Error: Invalid value for '--monitor': 'http://127.0.0.1:port' is not a URL of the form http://HOST:PORT "
         "(see 'mlops client --help')"),
        (("serve", "--log-url", "127.0.0.1:8081"),
         "Error: Invalid value for '--log-url': '127.0.0.1:8081' is not a URL of the form http://HOST[:PORT]/PATH "
         "(see 'mlops serve --help')"),
        (("monitor", "report", "--metrics-url", "mpg-predictor/metrics"),
         "Error: Invalid value for '--metrics-url': 'mpg-predictor/metrics' is not a URL of the form "
         "http://HOST[:PORT]/PATH (see 'mlops monitor report --help')"),
        (("gate", "--candidate", ".", "--champion", "prod"),
         "Error: Invalid value for '--champion': 'prod' is not staging, production, a model URI (s3://...) or a "
         "model directory (see 'mlops gate --help')"),
    ],
)  # fmt: skip
def test_a_value_in_the_wrong_form_is_a_usage_error_naming_the_form(args, line):
    assert one_line_error(run_mlops(*args), 2) == line


def test_up_on_a_folder_that_is_not_a_repository_says_so(tmp_path):
    result = run_mlops("up", "--repo", tmp_path, "--staging-port", str(free_port()), "--production-port",
                       str(free_port()))  # fmt: skip
    assert one_line_error(result) == f"Error: {tmp_path} is not a git repository: --repo names a clone of this project"
