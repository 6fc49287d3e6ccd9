"""HTTP plumbing both servers (the predictor, the monitor) share: the socket, the uvicorn configuration, the
signals, and the request limits enforced before any handler runs.

- body: at most ``MAX_BODY_BYTES``, declared or streamed (413), by ``BodyLimit``;
- request line + headers: at most ``MAX_HEAD_BYTES`` (431), and
- the whole request must arrive within ``RECEIVE_TIMEOUT`` seconds of its first byte
  (or of the connection opening): otherwise 408 and the connection is closed,
  by ``GuardedHttpToolsProtocol``, uvicorn's httptools protocol with both checks added.

uvicorn itself bounds neither: httptools buffers a header of any size, and a request
sent one byte at a time keeps its connection open for ever.
"""

from __future__ import annotations

import http
import signal
import socket
import subprocess

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from core.errors import MlopsError

#: GuardedHttpToolsProtocol overrides uvicorn's private HttpToolsProtocol (data_received, on_message_begin,
#: connection_made/lost, its transport, parser and cycle): checked against this version
#: (tests/unit/test_library_internals.py fails when another is installed).
CHECKED = {"uvicorn": "0.54.0"}
MAX_BODY_BYTES = 1 << 20
MAX_HEAD_BYTES = 16 << 10
RECEIVE_TIMEOUT = 10.0


def raw_response(status: int, message: str) -> bytes:
    """A complete HTTP/1.1 JSON error response that closes the connection."""
    body = orjson.dumps({"error": message})
    head = (
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """httptools with a bound on header bytes and on the time to receive a request."""

    receive_timeout = RECEIVE_TIMEOUT

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._head_bytes = 0  # bytes received while a request line and headers are incomplete
        self._head_length = 0  # bytes of request line and headers parsed so far
        self._reading_head = True
        self._deadline = None

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.receive_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _reject(self, status: int, message: str) -> None:
        if self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(raw_response(status, message))
        self.transport.close()

    def _timed_out(self) -> None:
        self._deadline = None
        self._reject(408, f"the request was not received within {self.receive_timeout:g} s")

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()  # a connection that sends nothing is closed too

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """uvicorn's, with the two limits, and without a log line per malformed request."""
        self._arm()  # first bytes of a request on a kept-alive connection
        if self._reading_head:
            self._head_bytes += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # no upgrades here: the request is answered as plain HTTP
        except httptools.HttpParserError as e:
            if isinstance(e.__context__, _HeadTooLargeError):
                self._reject(431, f"request line and header fields larger than {MAX_HEAD_BYTES} bytes")
            else:
                self.send_400_response("Invalid HTTP request received.")
            return
        if self._reading_head and self._head_bytes > MAX_HEAD_BYTES:  # a head still arriving
            self._reject(431, f"request line and header fields larger than {MAX_HEAD_BYTES} bytes")

    def on_message_begin(self) -> None:
        self._head_length = 0
        super().on_message_begin()

    def _count(self, size: int) -> None:
        self._head_length += size
        if self._head_length > MAX_HEAD_BYTES:  # a whole head arrived in one read
            raise _HeadTooLargeError

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()
        self._reading_head, self._head_bytes = True, 0


class _HeadTooLargeError(Exception):
    pass


class BodyLimit:
    """ASGI middleware: 413 for request bodies over ``limit`` bytes, declared or streamed."""

    def __init__(self, app, limit: int = MAX_BODY_BYTES):
        self.app, self.limit = app, limit

    async def _reject(self, send) -> None:
        body = orjson.dumps({"error": f"request body larger than {self.limit} bytes"})
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._reject(send)
        received = 0

        async def counting_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise _BodyTooLargeError
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _BodyTooLargeError:
            await self._reject(send)


class _BodyTooLargeError(Exception):
    pass


class PortInUseError(MlopsError):
    """The address to listen on is taken (or not this machine's)."""


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bound, then released for the caller)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready socket on ``host:port`` (port 0: any free port), or one line saying why not."""
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so (proto 0 would
    # leave Nagle on, and every response would wait ~40 ms for a delayed ACK).
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise PortInUseError(
            f"cannot listen on {host}:{port}: {e.strerror}; stop what listens there or choose another --port"
        ) from e
    return sock


def stop_process(process: subprocess.Popen, timeout: float = 10) -> None:
    """A server this process started, stopped: SIGTERM (its graceful stop), SIGKILL after ``timeout`` s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def exit_on_signals() -> None:
    """SIGINT and SIGTERM end the process normally (status 0): uvicorn shuts down gracefully on either, then
    re-raises it with the handlers it found at start, these."""

    def exit_cleanly(_signum, _frame) -> None:
        raise SystemExit(0)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, exit_cleanly)


def interrupt_once_on_signals() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt, once: the command's own clean-up then runs to its end even when
    both signals come (Ctrl-C reaches the whole process group while a script's trap sends SIGTERM), where a second
    KeyboardInterrupt in the middle of it would end the command with click's "Aborted!" and its children left."""
    stopping = []

    def stop(signum, _frame) -> None:
        if not stopping:
            stopping.append(signum)
            raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)


def server_config(app, *, receive_timeout: float, keep_alive: float, access_log: bool, **extra):
    """uvicorn's configuration for either server: the guarded protocol, no Server header, no proxy headers
    (nothing here trusts a client's forwarded address: nginx passes the real one as X-Real-IP), the keep-alive."""
    import uvicorn

    protocol = type("Protocol", (GuardedHttpToolsProtocol,), {"receive_timeout": receive_timeout})
    return uvicorn.Config(
        app,
        http=protocol,
        access_log=access_log,
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=keep_alive,
        **extra,
    )
