"""Serve the client page on this machine: NGINX with the repo's nginx.conf, or a Python stand-in.

The site is laid out as in the container (``conf/nginx.conf``, ``conf/upstream.conf``,
``html/``), with two local differences: upstream.conf points at the local predictor
and the ``listen`` port is the one asked for. Without nginx, ``FallbackClient``
serves the same files, proxies the same paths and sends the same security headers
(read from nginx.conf), so the page behaves the same.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

from core.errors import MlopsError
from infra.http import stop_process

API_ROOTS = ("/v1", "/v2")  # and everything under them
DEFAULT_MONITOR = "http://127.0.0.1:8081"
HEADER = re.compile(r'^\s*add_header\s+(\S+)\s+"([^"]*)"\s+always;', re.MULTILINE)
ROUTE = re.compile(
    r"location = (?P<path>/\S+) \{\s*if \(\$request_method != (?P<method>[A-Z]+)\) \{ return 405; \}"
    r"(?:\s*[a-z_]+ [^;{}]*;)*?\s*proxy_pass http://(?P<upstream>\w+);"  # other directives may come between
)


def proxied_routes(nginx_conf: str) -> dict[str, tuple[str, str]]:
    """Path -> (method, upstream) of every route nginx.conf proxies."""
    return {m["path"]: (m["method"], m["upstream"]) for m in ROUTE.finditer(nginx_conf)}


def prepare_site(
    client_dir: Path, predictor_url: str | list[str], port: int, monitor_url: str = DEFAULT_MONITOR
) -> Path:
    """A world-readable prefix dir (nginx workers may run as nobody) holding conf/ and html/."""
    prefix = Path(tempfile.mkdtemp(prefix="mpg-client-"))
    prefix.chmod(0o755)
    (prefix / "conf").mkdir(mode=0o755)
    conf = (client_dir / "nginx.conf").read_text()
    (prefix / "conf" / "nginx.conf").write_text(re.sub(r"listen 8080;", f"listen 127.0.0.1:{port};", conf))
    write_upstreams(prefix, predictor_url, monitor_url)
    shutil.copytree(client_dir / "html", prefix / "html")
    for path in prefix.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return prefix


def write_upstreams(prefix: Path, predictor_url: str | list[str], monitor_url: str) -> None:
    """conf/upstream.conf naming the predictor (or several: ``mlops up`` lists its two slots, and nginx takes
    the one that answers) and the monitor."""

    def servers(urls: list[str]) -> str:
        fails = " max_fails=1 fail_timeout=2s" if len(urls) > 1 else ""
        return "".join(f"    server {urlparse(url).hostname}:{urlparse(url).port}{fails};\n" for url in urls)

    predictors = [predictor_url] if isinstance(predictor_url, str) else predictor_url
    upstreams = "".join(
        f"upstream {name} {{\n{servers(urls)}    keepalive 4;\n}}\n"
        for name, urls in (("predictor", predictors), ("monitor", [monitor_url]))
    )
    (prefix / "conf" / "upstream.conf").write_text(upstreams)


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)


class ClientStartError(MlopsError):
    """nginx could not start on the prepared site."""


@contextlib.contextmanager
def running_nginx(
    client_dir: Path, predictor_url: str, port: int, monitor_url: str = DEFAULT_MONITOR, timeout: float = 10
) -> Iterator[subprocess.Popen]:
    """nginx on a prepared site, up and listening; stopped and its folder removed on exit, however it ends."""
    prefix = prepare_site(client_dir, predictor_url, port, monitor_url)
    process = None
    try:
        process = started_nginx(prefix, port, timeout)
        yield process
    finally:
        if process is not None:
            stop_process(process)
        shutil.rmtree(prefix, ignore_errors=True)  # made by prepare_site


def started_nginx(prefix: Path, port: int, timeout: float = 10) -> subprocess.Popen:
    """nginx on a prepared site, listening on ``port``; or ``ClientStartError`` with its error log's last line."""
    process, deadline = start_nginx(prefix), time.monotonic() + timeout
    while not listening(port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            reason = [line for line in error_log(prefix).splitlines() if line.strip()][-1:] or ["no output"]
            raise ClientStartError(f"nginx did not start on 127.0.0.1:{port}: {reason[0].strip()}")
        time.sleep(0.05)
    return process


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def error_log(prefix: Path) -> str:
    path = prefix / "error.log"
    return path.read_text(errors="replace") if path.exists() else ""


def start_nginx(prefix: Path) -> subprocess.Popen:
    """nginx in the foreground on the prepared site, its error log in ``prefix/error.log``: a file, not a pipe
    nobody reads (under load an upstream that refuses fills a pipe in seconds, and nginx then blocks on it)."""
    binary = nginx_binary()
    if binary is None:
        raise FileNotFoundError("nginx is not installed (Debian: apt-get install nginx-light)")
    command = [
        binary,
        "-e",
        "stderr",
        "-p",
        f"{prefix}/",
        "-c",
        str(prefix / "conf" / "nginx.conf"),
        "-g",
        "daemon off;",
    ]
    with open(prefix / "error.log", "ab") as log:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)


class _Handler(SimpleHTTPRequestHandler):
    upstreams: dict[str, tuple[str, int]]  # nginx.conf's upstream name -> (host, port)
    headers_to_add: list[tuple[str, str]]
    routes: dict[str, tuple[str, str]]
    FORWARDED = ("Content-Type", "X-Request-Id")

    def end_headers(self):
        for name, value in self.headers_to_add:
            self.send_header(name, value)
        super().end_headers()

    def log_message(self, *args):
        pass

    def _proxy(self, upstream: str):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        connection = http.client.HTTPConnection(*self.upstreams[upstream], timeout=30)
        headers = {name: self.headers[name] for name in self.FORWARDED if self.headers.get(name)}
        headers["X-Request-Id"] = headers["Ce-Id"] = uuid.uuid4().hex  # as nginx: never the caller's id
        try:
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        except OSError as e:
            self.send_error(502, f"{upstream} unreachable: {e}")
            return
        finally:
            connection.close()
        self.send_response(response.status)
        for name in self.FORWARDED:
            if response.getheader(name):
                self.send_header(name, response.getheader(name))
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _api(self) -> bool:
        """Answer an API path as nginx does: proxy a listed route, 405 for another method, 404 otherwise."""
        path = urlparse(self.path).path
        if path in self.routes:
            method, upstream = self.routes[path]
            if method == self.command:
                self._proxy(upstream)
            else:
                self.send_error(405)
            return True
        if path in API_ROOTS or path.startswith(tuple(f"{root}/" for root in API_ROOTS)):
            self.send_error(404)
            return True
        return False

    def do_GET(self):  # noqa: N802 - http.server's naming
        if self._api():
            return None
        if self.path == "/healthz":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok\n")
            return None
        return super().do_GET()

    def do_POST(self):  # noqa: N802
        if not self._api():
            self.send_error(405)


def fallback_server(
    client_dir: Path, predictor_url: str, port: int, monitor_url: str = DEFAULT_MONITOR
) -> ThreadingHTTPServer:
    """The Python stand-in for nginx: same files, same proxied paths, same security headers."""
    conf = (client_dir / "nginx.conf").read_text()
    upstreams = {
        name: (urlparse(url).hostname, urlparse(url).port)
        for name, url in (("predictor", predictor_url), ("monitor", monitor_url))
    }
    handler = type(
        "ClientHandler",
        (_Handler,),
        {"upstreams": upstreams, "headers_to_add": HEADER.findall(conf), "routes": proxied_routes(conf)},
    )
    return ThreadingHTTPServer(("127.0.0.1", port), partial(handler, directory=str(client_dir / "html")))
