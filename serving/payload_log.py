"""The predictor's own payload logger: the CloudEvents KServe's logger sends, for runs without KServe.

In the cluster the InferenceService's ``logger`` (KServe's agent sidecar) posts a
request and a response CloudEvent for every prediction to the monitor. On a laptop
there is no agent, so ``mlops serve --log-url URL`` does the same from the predictor:
the same binary-mode events (``ce-id`` = the request's id: its ``Ce-Id``, as KServe's
agent takes it, else its ``X-Request-Id``; ``ce-type``
``org.kubeflow.serving.inference.request`` / ``.response``, ``ce-inferenceservicename``,
``ce-namespace``), the request body and the response body as they went over the wire.
The monitor is therefore tested against what KServe sends, by the code that serves.

Sending never slows or fails a prediction beyond its own CPU: events wait in a bounded
queue and ``SENDERS`` tasks post them over kept-alive connections; when the queue is
full (the monitor is down or slower than the traffic) new events are dropped and
counted (``mpg_payload_log_dropped_total``), as KServe's agent drops what it cannot
send. The posts are plain HTTP/1.1 written here: the agent's work runs in the
predictor's own process, and a general client library costs more per event than the
prediction it logs.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from urllib.parse import urlsplit

from prometheus_client import Counter

from core.errors import MlopsError

logger = logging.getLogger(__name__)
QUEUE = 10_000
SENDERS = 8
TIMEOUT = 5.0
REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
DROPPED = Counter("mpg_payload_log_dropped", "Payload-log events dropped (queue full or monitor unreachable)")


class LogURLError(MlopsError):
    """``--log-url`` is not an http:// URL."""


class StaleConnectionError(OSError):
    """The server closed a kept-alive connection before our request reached it."""


class PayloadLog:
    def __init__(self, url: str, service: str, namespace: str):
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or parts.query or parts.fragment:
            raise LogURLError(f"--log-url {url!r}: give the monitor's http://HOST:PORT/ (the local monitor)")
        self.host, self.port, self.path = parts.hostname, parts.port or 80, parts.path or "/"
        self.url, self.service, self.namespace = url, service, namespace
        self.queue: asyncio.Queue[tuple[str, str, bytes]] | None = None
        self._tasks: list[asyncio.Task] = []
        self._failures = 0

    def start(self) -> None:
        self.queue = asyncio.Queue(maxsize=QUEUE)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._send_events()) for _ in range(SENDERS)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()

    def emit(self, request_id: str, request_body: bytes, response_body: bytes) -> None:
        """Queue the two events of one prediction (never blocks; drops when full)."""
        for event_type, body in ((REQUEST_TYPE, request_body), (RESPONSE_TYPE, response_body)):
            try:
                self.queue.put_nowait((request_id, event_type, body))
            except asyncio.QueueFull:
                DROPPED.inc()

    def headers(self, request_id: str, event_type: str) -> dict[str, str]:
        return {
            "ce-specversion": "1.0",
            "ce-id": request_id,
            "ce-type": event_type,
            "ce-source": "http://localhost:8080/",
            "ce-time": datetime.now(UTC).isoformat(),
            "ce-inferenceservicename": self.service,
            "ce-namespace": self.namespace,
            "ce-component": "predictor",
            "content-type": "application/json",
        }

    def _request(self, request_id: str, event_type: str, body: bytes) -> bytes:
        lines = [f"POST {self.path} HTTP/1.1", f"host: {self.host}:{self.port}", f"content-length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in self.headers(request_id, event_type).items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    async def _post(self, stream: tuple[asyncio.StreamReader, asyncio.StreamWriter], data: bytes) -> int:
        """Send one request on a kept-alive connection; the answer's status (its body is read and dropped).
        ``StaleConnectionError`` when the server had closed the connection before this request (nothing answered)."""
        reader, writer = stream
        writer.write(data)
        first = await reader.readline()
        if not first:
            raise StaleConnectionError("the monitor had closed the kept-alive connection")
        status = int(first.split()[1])
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        return status

    async def _send_events(self) -> None:
        """One of ``SENDERS`` concurrent posters, each on its own connection (reopened after an error).

        A kept-alive connection the monitor closed while idle (uvicorn after 65 s) answers nothing: the event
        is sent once more on a fresh connection, so the first events after a quiet minute are not lost."""
        stream = None
        while True:
            request_id, event_type, body = await self.queue.get()
            request = self._request(request_id, event_type, body)
            try:
                for attempt in (1, 2):
                    if stream is None:
                        stream = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), TIMEOUT)
                    try:
                        status = await asyncio.wait_for(self._post(stream, request), TIMEOUT)
                        break
                    except (StaleConnectionError, ConnectionResetError, BrokenPipeError):
                        stream[1].close()
                        stream = None
                        if attempt == 2:
                            raise
            except (OSError, ValueError, IndexError, TimeoutError, asyncio.IncompleteReadError) as e:
                if stream is not None:
                    stream[1].close()
                    stream = None
                self._failed(f"{type(e).__name__}: {e}")
                continue
            if status >= 300:
                self._failed(f"the monitor answered {status}")
            else:
                self._failures = 0

    def _failed(self, reason: str) -> None:
        DROPPED.inc()
        self._failures += 1
        if self._failures == 1:  # one line per outage, not one per event
            logger.warning("payload log to %s failing: %s", self.url, reason)
