"""Shared fixtures: the project's real data, params and one trained model per test session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from training.data import load_dataset
from training.params import load_params

ROOT = Path(__file__).resolve().parents[1]
SEED_DATA = ROOT / "data" / "seed" / "auto-mpg.csv"


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def params():
    return load_params(ROOT / "params.yaml")


@pytest.fixture(scope="session")
def dataset():
    """The committed starting data, validated and cleaned (independent of `dvc pull`)."""
    return load_dataset(SEED_DATA)


@pytest.fixture(scope="session")
def trusted_csv(tmp_path_factory, params) -> Path:
    """The trusted holdout's rows: the seed's held-out side, as `mlops data freeze-holdout` writes them (the
    committed data/trusted/holdout.csv.dvc pins the same bytes; a clone has the file after `mlops data pull`)."""
    from training.data import holdout_lines

    path = tmp_path_factory.mktemp("trusted") / "holdout.csv"
    rows = holdout_lines(SEED_DATA, params.split.test_size, params.split.seed)
    path.write_text(rows.to_csv(index=False, lineterminator="\n"))
    return path


@pytest.fixture(scope="session")
def trusted(trusted_csv):
    return load_dataset(trusted_csv)


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory, dataset, params) -> Path:
    """A model directory trained once with the committed params."""
    from training.train import train

    out = tmp_path_factory.mktemp("model") / "candidate"
    train(dataset, params, out)
    return out


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, dataset, params) -> Path:
    """A model directory made in a tenth of a second (least squares only): for tests of code that stores, moves,
    checks or loads a model and does not care how good it is. Model-quality tests use ``trained_dir``."""
    from training.train import train

    only = params.train.model_copy(update={"candidates": ["linear"]})
    out = tmp_path_factory.mktemp("tiny") / "candidate"
    train(dataset, params.model_copy(update={"train": only}), out)
    return out


@pytest.fixture(scope="session")
def served_dir() -> Path:
    """The model the overlays name, as the repository ships it (``data/models``): the same bytes on every
    machine, unlike a model trained here (training is not bitwise reproducible across CPUs)."""
    from infra.overlays import read_model_uri
    from infra.shipped import shipped_path, verified

    uri = read_model_uri(ROOT, "staging")
    return verified(ROOT / shipped_path(uri), uri)


@pytest.fixture(scope="session")
def model(trained_dir):
    from core.model_card import load_model

    return load_model(trained_dir)[0]


@pytest.fixture
def model_copy(tiny_dir, tmp_path) -> Path:
    """A private copy of a model directory a test may damage (the tiny model: its tests never judge quality)."""
    return Path(shutil.copytree(tiny_dir, tmp_path / "model"))


MLOPS = Path(sys.executable).parent / "mlops"


def run_mlops(*args, env: dict | None = None, cwd: Path | None = None, timeout: float = 300, prefix=()):
    """The real `mlops` console script in a subprocess (CliRunner would hide tracebacks).

    ``prefix``: a command that runs it (``prlimit ...``)."""
    return subprocess.run(
        [*prefix, str(MLOPS), *map(str, args)],
        env={**os.environ, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line_error(result, exit_code: int = 1) -> str:
    """Assert the command failed the contract's way: the exit code, one stderr line, no traceback."""
    assert result.returncode == exit_code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server on loopback for the session (bench/local_postgres.py)."""
    from bench.local_postgres import postgres_cluster

    with postgres_cluster() as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1000,1100",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1, a random port (as dvc-s3's own tests do)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """Credentials for the moto server, from the environment as in production."""
    values = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return {"endpoint": s3_server, **values}


@pytest.fixture
def bucket(s3_env, request) -> str:
    """An empty bucket on the moto server, named after the test."""
    import boto3

    name = request.node.name.lower().replace("_", "-")[:50].strip("-")  # a valid S3 bucket name
    boto3.client("s3", endpoint_url=s3_env["endpoint"]).create_bucket(Bucket=name)
    return name
