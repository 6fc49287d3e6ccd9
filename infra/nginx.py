"""NGINX on this machine with the repo's page configuration: the page's site laid out as in the container
(``conf/nginx.conf``, ``conf/upstream.conf``, ``html/``), with two local differences: upstream.conf points at the
local predictor(s) and monitor, and the ``listen`` port is the one asked for. Used by ``mlops client`` (serving),
``mlops up`` (gitops), the tests and the benchmarks.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
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
