"""The predictor's surface: only the routes clients need, bounded requests, quiet logs."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from bench.load import rss_kib
from infra.http import MAX_HEAD_BYTES
from infra.nginx import proxied_routes
from serving.openapi import predictor_openapi
from serving.routes import PUBLIC, ROUTES, route_name
from tests.serving.conftest import running_server

CAR = [4, 140, 90, 2800, 15.5, 1976, 1]
CLOSED_ROUTES = [
    ("POST", "/v2/repository/models/mpg/unload"),
    ("POST", "/v2/repository/models/mpg/load"),
    ("POST", "/v2/repository/index"),
    ("POST", "/v1/models/mpg:explain"),
    ("POST", "/v2/models/mpg/versions/1/infer"),
    ("GET", "/v2/models/mpg/versions/1"),
    ("GET", "/v2/models/mpg/versions/1/ready"),
    ("GET", "/v2/models"),
    ("GET", "/v1/models"),
    ("GET", "/v2"),
    ("GET", "/"),
    ("GET", "/docs"),
    ("GET", "/openapi.json"),
    ("DELETE", "/v2/models/mpg"),
]


@pytest.mark.parametrize(("method", "path"), CLOSED_ROUTES, ids=[f"{m} {p}" for m, p in CLOSED_ROUTES])
def test_routes_beyond_the_listed_ones_are_not_served(base_url, method, path):
    response = httpx.request(method, base_url + path, json={"inputs": []})
    assert response.status_code in (404, 405), response.text
    assert "error" in response.json()


def test_the_model_cannot_be_unloaded_and_stays_ready(base_url):
    for _ in range(3):
        httpx.post(f"{base_url}/v2/repository/models/mpg/unload")
    assert httpx.get(f"{base_url}/v2/models/mpg/ready").status_code == 200
    assert httpx.get(f"{base_url}/v2/health/live").json() == {"live": True}
    assert httpx.post(f"{base_url}/v1/models/mpg:predict", json={"instances": [CAR]}).status_code == 200


def test_the_page_proxies_the_public_routes_and_the_openapi_describes_them(root):
    """nginx.conf is a static file: it must proxy exactly the public routes of the table, each by its method, and
    the feedback to the monitor; the OpenAPI description covers the same routes."""
    proxied = proxied_routes((root / "k8s" / "base" / "client" / "nginx.conf").read_text())
    assert proxied == {
        **{route.for_model("mpg"): (route.method, "predictor") for route in PUBLIC},
        "/feedback": ("POST", "monitor"),
    }
    paths = predictor_openapi("mpg")["paths"]
    assert {(path, method.upper()) for path, ops in paths.items() for method in ops} == {
        (route.for_model("mpg"), route.method) for route in PUBLIC
    }


def test_every_answer_is_labelled_by_its_route_and_unknown_paths_share_one_label():
    assert [route_name(route.for_model("mpg")) for route in ROUTES] == [route.name for route in ROUTES]
    assert route_name("/v2/repository/models/mpg/unload") == route_name("/x" * 50) == "other"


def test_every_listed_route_answers(base_url):
    for route in ROUTES:
        method, path = route.method, route.path
        url = base_url + path.format(model_name="mpg")
        body = (
            {"instances": [CAR]}
            if "predict" in path
            else {"inputs": [{"name": "x", "shape": [1, 7], "datatype": "FP64", "data": CAR}]}
        )
        response = httpx.request(method, url, json=body if method == "POST" else None)
        assert response.status_code == 200, (path, response.text)


def raw_exchange(base_url: str, head: bytes, chunk: int = 64 << 10) -> bytes:
    """Send ``head`` over a raw socket (the server may hang up midway), then read the reply."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        try:
            for start in range(0, len(head), chunk):
                sock.sendall(head[start : start + chunk])
        except OSError:
            pass  # the server closed the connection after answering
        reply = b""
        try:
            while data := sock.recv(65536):
                reply += data
        except OSError:
            pass
        return reply


def test_oversized_headers_get_431_and_do_not_grow_the_server(server):
    base, process, _ = server
    before = rss_kib(process.pid)
    header = b"X-Padding: " + b"a" * (32 << 20) + b"\r\n"
    threads = [
        threading.Thread(target=lambda: raw_exchange(base, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + header))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    reply = raw_exchange(
        base, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + b"X-A: " + b"b" * (MAX_HEAD_BYTES + 10) + b"\r\n\r\n"
    )
    assert reply.startswith(b"HTTP/1.1 431"), reply[:200]
    assert rss_kib(process.pid) - before < 20_000, "four 32 MiB headers must not be buffered"
    small = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-A: " + b"c" * 8000 + b"\r\n\r\n"
    assert raw_exchange(base, small + b"").startswith(b"HTTP/1.1 200")


def test_half_sent_requests_are_cut_off_after_the_receive_timeout(trained_dir, tmp_path):
    with running_server(str(trained_dir), tmp_path, args=("--receive-timeout", "1")) as (base, _, _log):
        host, port = base.removeprefix("http://").split(":")
        sockets = []
        for index in range(200):
            sock = socket.create_connection((host, int(port)), timeout=10)
            partial = b"POST /v1/models/mpg:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
            sock.sendall(partial if index % 2 else partial + b'\r\n{"instances"')  # headers cut / body cut
            sockets.append(sock)
        idle = socket.create_connection((host, int(port)), timeout=10)  # sends nothing at all
        started = time.monotonic()
        replies = []
        for sock in [*sockets, idle]:
            reply = b""
            while data := sock.recv(65536):
                reply += data
            replies.append(reply)
            sock.close()
        assert time.monotonic() - started < 10
        assert all(r.startswith(b"HTTP/1.1 408") for r in replies), {r[:40] for r in replies}
        assert httpx.post(f"{base}/v1/models/mpg:predict", json={"instances": [CAR]}).status_code == 200


def test_logging_off_means_no_line_per_request_good_or_bad(trained_dir, tmp_path):
    with running_server(str(trained_dir), tmp_path) as (base, _, log):
        time.sleep(0.5)
        before = log.read_text()
        for _ in range(20):
            httpx.post(f"{base}/v1/models/mpg:predict", json={"instances": [CAR]})
            httpx.post(f"{base}/v1/models/mpg:predict", json={"instances": [[1, 2]]})
            httpx.post(f"{base}/v2/models/mpg/infer", json={"inputs": [{"name": "x"}]})
            httpx.get(f"{base}/nowhere")
        time.sleep(0.5)
        assert log.read_text() == before


def test_access_log_on_is_one_line_per_request_and_no_traceback(trained_dir, tmp_path):
    with running_server(str(trained_dir), tmp_path, args=("--access-log",)) as (base, _, log):
        time.sleep(0.5)
        before = len(log.read_text().splitlines())
        for _ in range(10):
            httpx.post(f"{base}/v1/models/mpg:predict", json={"instances": [[1, 2]]})
        time.sleep(0.5)
        text = log.read_text()
        assert len(text.splitlines()) - before == 10
        assert "Traceback" not in text and " 400" in text.splitlines()[-1]


def test_the_listening_socket_lets_asyncio_turn_nagle_off():
    """asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP; with proto 0 every
    response waited ~40 ms for the client's delayed ACK (seen: 364 req/s at 16 connections)."""
    from infra.http import bind

    sock = bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()
