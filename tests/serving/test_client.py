"""The client page: nginx with the repo's nginx.conf in front of the predictor, driven by headless Chromium."""

from __future__ import annotations

import shutil
import threading
import time

import httpx
import pytest

from infra.http import free_port
from infra.nginx import prepare_site, running_nginx, start_nginx
from serving.page import fallback_server
from tests.serving.conftest import fill, wait_until

LITRES_TO_CUBIC_INCHES, KW_TO_HP, KG_TO_LB = 61.0237441, 1.34102209, 2.20462262


@pytest.fixture(scope="module")
def nginx_site(base_url, root):
    """nginx (Debian nginx-light, installed by .ci/run) with the repo's nginx.conf; only the listen port
    and upstream.conf's server differ from the container."""
    port = free_port()
    prefix = prepare_site(root / "k8s" / "base" / "client", base_url, port)
    process = start_nginx(prefix)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(f"{url}/healthz", process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(prefix, ignore_errors=True)


@pytest.fixture(scope="module")
def fallback_site(base_url, root):
    server = fallback_server(root / "k8s" / "base" / "client", base_url, free_port())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_nginx_serves_the_page_with_security_headers_and_proxies_both_protocols(nginx_site):
    page = httpx.get(f"{nginx_site}/")
    assert page.status_code == 200 and "<form" in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(f"{nginx_site}/app.js").headers["content-type"] == "application/javascript"
    good = httpx.post(f"{nginx_site}/v1/models/mpg:predict", json={"instances": [[4, 140, 90, 2800, 15.5, 1976, 1]]})
    assert good.status_code == 200 and "predictions" in good.json()
    bad = httpx.post(f"{nginx_site}/v1/models/mpg:predict", json={"instances": [[4, 140, 90, -1, 15.5, 1976, 1]]})
    assert bad.status_code == 400 and "instances[0].weight" in bad.json()["error"]
    assert httpx.get(f"{nginx_site}/v2/models/mpg").json()["name"] == "mpg"


def test_python_fallback_matches_nginx(nginx_site, fallback_site):
    security = ("content-security-policy", "x-content-type-options", "x-frame-options", "referrer-policy")
    nginx_page, python_page = httpx.get(f"{nginx_site}/"), httpx.get(f"{fallback_site}/")
    assert python_page.text == nginx_page.text
    assert {h: python_page.headers[h] for h in security} == {h: nginx_page.headers[h] for h in security}
    body = {"instances": [[4, 140, 90, 2800, 15.5, 1976, 1]]}
    assert (
        httpx.post(f"{fallback_site}/v1/models/mpg:predict", json=body).json()
        == httpx.post(f"{nginx_site}/v1/models/mpg:predict", json=body).json()
    )


EXPOSED = [
    ("POST", "/v1/models/mpg:predict", 200),
    ("POST", "/v2/models/mpg/infer", 200),
    ("GET", "/v2/models/mpg", 200),
    ("GET", "/v2/models/mpg/ready", 200),
    ("POST", "/v2/repository/models/mpg/unload", 404),
    ("POST", "/v2/repository/models/mpg/load", 404),
    ("GET", "/v2/health/live", 404),
    ("GET", "/v2/health/ready", 404),
    ("GET", "/v1/models/mpg", 404),
    ("GET", "/v2", 404),
    ("GET", "/v1/models/mpg:predict", 405),
    ("POST", "/v2/models/mpg", 405),
    ("GET", "/feedback", 405),  # POST goes to the monitor (tests/monitoring/test_loop.py)
]
BODIES = {
    "/v1/models/mpg:predict": {"instances": [[4, 140, 90, 2800, 15.5, 1976, 1]]},
    "/v2/models/mpg/infer": {
        "inputs": [{"name": "x", "shape": [1, 7], "datatype": "FP64", "data": [4, 140, 90, 2800, 15.5, 1976, 1]}]
    },
}


@pytest.mark.parametrize("site", ["nginx_site", "fallback_site"])
def test_only_the_routes_the_page_and_api_users_need_are_proxied(request, base_url, site):
    url = request.getfixturevalue(site)
    for method, path, status in EXPOSED:
        response = httpx.request(method, url + path, json=BODIES.get(path) if method == "POST" else None)
        assert response.status_code == status, (site, method, path, response.text)
    assert httpx.get(f"{base_url}/v2/models/mpg/ready").status_code == 200, "the model is still loaded"


def test_browser_gets_the_same_prediction_as_the_api(browser, nginx_site, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(nginx_site + "/")
    car = {
        "cylinders": "4",
        "displacement": "1.6",
        "horsepower": "55",
        "weight": "1000",
        "acceleration": "16",
        "model_year": "1980",
        "origin": "2",
    }
    fill(browser, car)
    WebDriverWait(browser, 10).until(ec.visibility_of_element_located((By.ID, "result")))
    shown = browser.find_element(By.ID, "l100km").text
    model_id = browser.find_element(By.ID, "model-id").text
    api = httpx.post(
        f"{nginx_site}/v1/models/mpg:predict",
        json={
            "instances": [
                {
                    "cylinders": 4,
                    "displacement": 1.6 * LITRES_TO_CUBIC_INCHES,
                    "horsepower": 55 * KW_TO_HP,
                    "weight": 1000 * KG_TO_LB,
                    "acceleration": 16,
                    "model_year": 1980,
                    "origin": 2,
                }
            ]
        },
    ).json()
    assert shown == f"{api['predictions'][0]['l_per_100km']:.1f}"
    assert model_id == api["model_id"]
    browser.save_screenshot(str(tmp_path / "result.png"))


def test_browser_shows_the_api_field_error_next_to_the_field(browser, nginx_site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(nginx_site + "/")
    fill(browser, {"weight": "-5"})
    error = browser.find_element(By.ID, "weight-error")
    WebDriverWait(browser, 10).until(lambda _: error.text)
    assert "must be within" in error.text
    assert browser.find_element(By.ID, "weight").get_attribute("aria-invalid") == "true"
    assert browser.find_element(By.ID, "result").get_attribute("hidden") is not None
    label = browser.find_element(By.CSS_SELECTOR, "label[for=weight]")
    assert label.text == "Weight"


def wait_text(browser, element_id: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    element = browser.find_element(By.ID, element_id)
    WebDriverWait(browser, 10).until(lambda _: element.text)
    return element.text


def result_hidden(browser) -> bool:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.ID, "result").get_attribute("hidden") is not None


def test_clearing_a_field_after_an_estimate_hides_the_old_estimate(browser, nginx_site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(nginx_site + "/")
    fill(browser, {})
    WebDriverWait(browser, 10).until(ec.visibility_of_element_located((By.ID, "result")))
    fill(browser, {"weight": ""})
    assert wait_text(browser, "weight-error") == "enter a number"
    assert result_hidden(browser), "the estimate was for other values"


def test_metric_errors_and_labels_are_in_metric_units(browser, nginx_site):
    from selenium.webdriver.common.by import By

    browser.get(nginx_site + "/")
    label = browser.find_element(By.CSS_SELECTOR, "label[for=acceleration]")
    assert label.text == "Acceleration, 0-97 km/h"
    fill(browser, {"weight": "50000"})
    assert wait_text(browser, "weight-error") == "must be within [45.36, 9071.85] kg"
    browser.find_element(By.CSS_SELECTOR, "input[name=units][value=us]").click()
    assert label.text == "Acceleration, 0-60 mph"
    fill(browser, {"weight": "50000"})
    assert wait_text(browser, "weight-error") == "must be within [100, 20000] lb"


def test_every_bad_field_is_marked_at_once(browser, nginx_site):
    from selenium.webdriver.common.by import By

    browser.get(nginx_site + "/")
    fill(browser, {"cylinders": "7", "weight": "-5", "model_year": "76"})
    assert wait_text(browser, "cylinders-error").startswith("must be one of 2, 3, 4")
    assert wait_text(browser, "weight-error").startswith("must be within")
    assert "four-digit year" in wait_text(browser, "model_year-error")
    marked = browser.find_elements(By.CSS_SELECTOR, "[aria-invalid=true]")
    assert {m.get_attribute("id") for m in marked} == {"cylinders", "weight", "model_year"}


def test_an_empty_field_and_a_bad_one_are_marked_together(browser, nginx_site):
    from selenium.webdriver.common.by import By

    browser.get(nginx_site + "/")
    fill(browser, {"weight": "", "model_year": "76"})
    assert wait_text(browser, "weight-error") == "enter a number"
    assert "four-digit year" in wait_text(browser, "model_year-error"), "not only the empty field, first"
    marked = browser.find_elements(By.CSS_SELECTOR, "[aria-invalid=true]")
    assert {m.get_attribute("id") for m in marked} == {"weight", "model_year"}
    assert result_hidden(browser)


def test_the_extrapolation_note_names_features_as_people_do(browser, nginx_site):
    browser.get(nginx_site + "/")
    fill(browser, {"model_year": "2001"})
    note = wait_text(browser, "extrapolation")
    assert "model year" in note and "model_year" not in note


def test_a_predictor_that_is_down_gives_a_plain_message(browser, root):
    """nginx answers 502 with an HTML page when the predictor is down; the page must not try to parse it."""
    port = free_port()
    with running_nginx(root / "k8s" / "base" / "client", f"http://127.0.0.1:{free_port()}", port):
        browser.get(f"http://127.0.0.1:{port}/")
        fill(browser, {})
        message = wait_text(browser, "form-error")
    assert message == "The estimate service is unavailable (HTTP 502). Try again in a moment."
    assert "Unexpected token" not in message and result_hidden(browser)


def test_nginx_limits_feedback_per_address_and_a_forged_forwarded_for_does_not_evade_it(root, tmp_path):
    """limit_req: 30 a minute after a burst of 10 (429 past it). X-Forwarded-For is trusted from private
    addresses only (the ingress controller): a client on loopback cannot name another address to get more.
    A report with a reporter's token is the monitor's to judge (401 for a token it does not know)."""
    port = free_port()
    prefix = prepare_site(root / "k8s" / "base" / "client", "http://127.0.0.1:9", port, "http://127.0.0.1:9")
    process = start_nginx(prefix)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(f"{url}/healthz", process)
        codes = [
            httpx.post(f"{url}/feedback", json={"request_id": "x", "actual_mpg": 20},
                       headers={"x-forwarded-for": f"198.51.100.{i}"}).status_code
            for i in range(14)
        ]  # fmt: skip
        assert 429 not in codes[:11] and codes[11:] == [429] * 3, codes
        reporter = httpx.post(f"{url}/feedback", json={"request_id": "x", "actual_mpg": 20},
                              headers={"authorization": "Bearer some-token"})  # fmt: skip
        assert reporter.status_code == 502, "a reporter's token goes on to the monitor (here down), which checks it"
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(prefix, ignore_errors=True)


def test_guessing_reporter_tokens_through_the_page_is_limited(root, tmp_path):
    """The review's bypass: any Authorization header switched nginx's feedback limit off, and the monitor
    answered every wrong token with a 401 (40/40 unthrottled guesses). Now nginx limits reporters' posts per
    address in a zone of their own, and the monitor charges a wrong token to the client's report allowance:
    past the burst every guess is a 429, whatever token or forwarded address it carries."""
    from tests.monitoring.conftest import running_monitor

    port = free_port()
    env = {"MLOPS_FEEDBACK_TOKENS": "fleet:" + "t" * 24}
    with (
        running_monitor(f"sqlite:///{tmp_path / 'm.db'}", env=env) as (monitor, _),
        running_nginx(root / "k8s" / "base" / "client", "http://127.0.0.1:9", port, monitor),
    ):
        started = time.monotonic()
        codes = [
            httpx.post(f"http://127.0.0.1:{port}/feedback", json={"request_id": "x", "actual_mpg": 20},
                       headers={"authorization": f"Bearer guess-{i:016d}", "x-forwarded-for": f"198.51.100.{i}",
                                "x-real-ip": f"198.51.100.{i}"}, timeout=30).status_code
            for i in range(40)
        ]  # fmt: skip
        refilled = (time.monotonic() - started) * 30 / 60  # the allowance grows back by 30 a minute
    assert set(codes) == {401, 429} and codes[:10] == [401] * 10, codes
    assert codes.count(401) <= 10 + refilled + 1, (codes, refilled)


def test_idle_half_sent_connections_do_not_take_the_page_down(nginx_site):
    """The review's attack: 1,100 connections that sent half a request and then nothing took the page's nginx
    down (1 worker x 1,024 connections: 0 of 15 estimates answered). Each estimate now still answers while
    2,000 such connections are held open, and nginx is still up afterwards."""
    import resource
    import socket
    from urllib.parse import urlsplit

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 4096:  # this process holds the 2,000 (nginx raises its own)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    address = urlsplit(nginx_site)
    held = []
    try:
        for _ in range(2000):
            connection = socket.create_connection((address.hostname, address.port), timeout=5)
            connection.sendall(b"POST /v1/models/mpg:predict HTTP/1.1\r\nHost: page\r\n")  # and never the rest
            held.append(connection)
        codes = [
            httpx.post(f"{nginx_site}/v1/models/mpg:predict", json={"instances": [[4, 140, 90, 2800, 15.5, 1976, 1]]},
                       timeout=10).status_code
            for _ in range(15)
        ]  # fmt: skip
    finally:
        for connection in held:
            connection.close()
    assert codes == [200] * 15
    assert httpx.get(f"{nginx_site}/healthz").status_code == 200
