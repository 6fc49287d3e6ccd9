"""Real kserve model servers on loopback, started as `mlops serve` subprocesses."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from infra.http import free_port
from tests.conftest import MLOPS


def wait_until(url: str, process: subprocess.Popen, expect=(200,), timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            said = process.stderr.read() if process.stderr else "(its output went elsewhere)"
            raise AssertionError(f"server exited early with {process.returncode}: {said}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code in expect:
                return
        time.sleep(0.2)
    raise AssertionError(f"{url} not answering {expect} after {timeout} s")


@contextlib.contextmanager
def running_server(model_uri: str, tmp_path: Path, ready: bool = True, args=(), env=None):
    """`mlops serve --model-uri ...` on a free loopback port; yields (base URL, process, log path)."""
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    env = {
        **os.environ,
        "MLOPS_CACHE_DIR": str(tmp_path / "cache"),
        "MLOPS_STORE_ROOT": str(tmp_path / "store"),
        **(env or {}),
    }
    command = [str(MLOPS), "serve", "--model-uri", model_uri, "--port", str(port), *map(str, args)]
    with open(log, "w") as handle:
        process = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        # the server is up once it answers; the model's own readiness is the test's business
        wait_until(f"{base}/v2/health/live", process, expect=(200, 503))
        if ready:
            wait_until(f"{base}/v2/models/mpg/ready", process)
        yield base, process, log
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory, trained_dir):
    tmp = tmp_path_factory.mktemp("server")
    with running_server(str(trained_dir), tmp) as running:
        yield running


@pytest.fixture(scope="module")
def base_url(server) -> str:
    return server[0]


def fill(driver, values: dict[str, str]) -> None:
    from selenium.webdriver.common.by import By

    for name, value in values.items():
        field = driver.find_element(By.ID, name)
        if field.tag_name == "select":
            field.find_element(By.CSS_SELECTOR, f"option[value='{value}']").click()
        else:
            field.clear()
            field.send_keys(value)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
