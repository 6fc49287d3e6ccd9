"""Serve the client page on this machine: NGINX with the repo's nginx.conf (infra/nginx.py), or a Python stand-in.

Without nginx, the stand-in serves the same files, proxies the same paths and sends the same security headers
(read from nginx.conf), so the page behaves the same.
"""

from __future__ import annotations

import http.client
import uuid
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

from infra.nginx import API_ROOTS, DEFAULT_MONITOR, HEADER, proxied_routes


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
