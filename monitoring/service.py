"""The monitor service: receives the predictor's payload log and stakeholder feedback.

Routes (a plain ASGI app: the ingest path is hot, so no framework routing on it):

- ``POST /``          a CloudEvent from KServe's inference logger (binary or structured);
                      202 once accepted (idempotent), 4xx naming the problem (nothing stored),
                      when the writer is ``QUEUE`` events behind, the answer waits for room
                      (backpressure on the logger) and is a 503 after ``ADMIT_WAIT`` seconds
- ``POST /feedback``  ``{"request_id": ..., "row": 0, "actual_mpg" | "actual_l_per_100km": ...}``
- ``GET /summary``    counts, the models seen, feedback coverage
- ``GET /healthz``    alive; ``GET /readyz`` the database answers; ``GET /metrics`` Prometheus

Events are written by group commit: a 202 means the event is valid and queued; one
writer commits every event that arrived while its previous transaction ran (up to
``BATCH``), so the database sees one commit per batch, not per event, with no timer
adding latency. Answering before the commit is what lets one process keep up with the
predictors (a 202 after it would cap each logger connection at one event per commit);
it costs nothing in durability the logger could use: KServe's agent never retries a
post, so an event in flight when a monitor dies is lost either way. SIGTERM drains the
queue before exit; a kill -9 loses the queued events (milliseconds of traffic). Reads
(/summary, /feedback) first wait for what was accepted before them to be committed.
Halves whose other side never comes are dropped after ``pair_timeout`` seconds; a
sweep pairs what replicas racing on one pair may have left unpaired.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from core.features import MPG_L100KM_FACTOR, TARGET_DOMAIN
from infra.http import MAX_BODY_BYTES
from monitoring import db
from monitoring.events import KINDS, ClientError, Half, NotAPrediction, parse_event, printable
from monitoring.reporters import RateLimit, client_address, reporter
from serving.schema import MAX_INSTANCES, field

logger = logging.getLogger(__name__)
BATCH = 1000  # events per transaction at most
PARSE_ON_LOOP = 64 * 1024  # bytes of an event parsed on the event loop; larger ones in a thread
QUEUE = 5 * BATCH  # events accepted and not yet committed, at most (then new ones wait for room)
ADMIT_WAIT = 5.0  # seconds an event waits for room in the queue before a 503
SWEEP_EVERY = 1.0  # seconds between sweeps (pair leftovers, expire halves)
RETAIN_EVERY = 60.0  # seconds between drops of the predictions older than the retention (--retain-days)
FEEDBACK_HOLD = 5.0  # seconds a feedback waits at most for its prediction to arrive from the payload logger
FEEDBACK_GRACE = 1.0  # ... and, past this, only while events keep arriving
FEEDBACK_POLL = 0.1
FEEDBACK_RATE = 30.0  # reports a minute per client address (nginx's limit_req in front: the same)
FEEDBACK_BURST = 10
MAX_HELD_FEEDBACK = 64  # feedbacks held at once at most; beyond, an unknown id is a 404 at once
FEEDBACK_KEYS = {"request_id", "row", "actual_mpg", "actual_l_per_100km"}


def parse_feedback(body: bytes) -> tuple[str, int, float]:
    """(request id, row, actual mpg) from a feedback body, or ``ClientError`` naming the field."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise ClientError(f"body: not valid JSON ({e})") from e
    if not isinstance(payload, dict):
        raise ClientError('body: send {"request_id": ..., "actual_mpg": ...}')
    unknown = sorted(set(payload) - FEEDBACK_KEYS)
    if unknown:
        raise ClientError(f"{field(unknown[0])}: unknown field; expected {', '.join(sorted(FEEDBACK_KEYS))}")
    request_id, row = payload.get("request_id"), payload.get("row", 0)
    if not isinstance(request_id, str) or not request_id or not printable(request_id):
        raise ClientError("request_id: required, the id the estimate came with (X-Request-Id, printable, ≤ 200)")
    if isinstance(row, bool) or not isinstance(row, int | float) or not 0 <= row < MAX_INSTANCES or row % 1:
        raise ClientError(f"row: must be a whole number from 0 to {MAX_INSTANCES - 1} (the car's place in its request)")
    row = int(row)
    given = [key for key in ("actual_mpg", "actual_l_per_100km") if key in payload]
    if len(given) != 1:
        raise ClientError("actual_mpg or actual_l_per_100km: give exactly one")
    value = payload[given[0]]
    if type(value) not in (int, float) or not math.isfinite(value) or value <= 0:
        raise ClientError(f"{given[0]}: must be a positive number")
    mpg = value if given[0] == "actual_mpg" else MPG_L100KM_FACTOR / value
    low, high = TARGET_DOMAIN
    if not low <= mpg <= high:
        raise ClientError(f"{given[0]}: {value:g} is not a plausible consumption ({low:g}-{high:g} mpg)")
    return request_id, row, float(mpg)


class LatestReport:
    """The latest daily report the CronJob recorded, read from the database on each scrape: its alerts and
    when it ran (Prometheus pages on the alerts, and on a report that stopped coming)."""

    def __init__(self, engine):
        self.engine = engine

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        from monitoring.db import latest_report

        try:
            latest = latest_report(self.engine)
        except Exception:  # noqa: BLE001 - a scrape must not fail on a database that is down: no sample then
            latest = None
        alerts = GaugeMetricFamily("mpg_monitor_report_alerts", "Alerts of the latest recorded daily report")
        when = GaugeMetricFamily("mpg_monitor_report_timestamp_seconds", "When the latest daily report ran")
        if latest is not None:
            alerts.add_metric([], latest["alerts"])
            when.add_metric([], latest["time"])
        yield alerts
        yield when


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.events = Counter(
            "mpg_monitor_events",
            "Inference-logger events by kind and result",
            ["kind", "result"],
            registry=self.registry,
        )
        self.predictions = Counter("mpg_monitor_predictions", "Prediction rows stored", registry=self.registry)
        self.expired = Counter(
            "mpg_monitor_predictions_expired",
            "Prediction rows dropped for age (--retain-days; feedback-labelled ones are kept)",
            registry=self.registry,
        )
        self.lost = Counter(
            "mpg_monitor_events_lost", "Accepted events a failed commit lost (database down)", registry=self.registry
        )
        self.ambiguous = Counter(
            "mpg_monitor_ambiguous_ids",
            "Event ids that named two different predictions (nothing under them is kept)",
            registry=self.registry,
        )
        self.feedback = Counter("mpg_monitor_feedback", "Feedback posts by result", ["result"], registry=self.registry)
        self.commit_seconds = Histogram(
            "mpg_monitor_commit_seconds", "Seconds per group commit", registry=self.registry
        )


class Writer:
    """Group commit: events wait in a queue; one transaction stores each batch and pairs what completes."""

    def __init__(self, engine, metrics: Metrics, pair_timeout: float, retain: float = 0.0):
        self.engine, self.metrics, self.pair_timeout = engine, metrics, pair_timeout
        self.retain, self.last_retain = retain, 0.0  # seconds a prediction is kept (0: for ever)
        self.queue: asyncio.Queue[Half] = asyncio.Queue(maxsize=QUEUE)
        self.settled = asyncio.Event()  # set: nothing accepted is waiting to be committed
        self.settled.set()
        self.last_sweep = 0.0
        self.connection = None  # the writer's own, kept open: no pool checkout or ping per batch

    async def submit(self, half: Half) -> None:
        """Queue ``half``; when the queue is full, wait for room (the sender slows down), then a 503."""
        try:
            self.queue.put_nowait(half)
        except asyncio.QueueFull:
            try:
                await asyncio.wait_for(self.queue.put(half), ADMIT_WAIT)
            except TimeoutError:
                message = f"the monitor has been {QUEUE} events behind its database for {ADMIT_WAIT:.0f} s: retry later"
                raise ClientError(message, 503) from None
        self.settled.clear()

    async def drain(self) -> None:
        """Return once every event accepted so far is committed (or its batch failed)."""
        await self.settled.wait()

    def _commit(self, batch: list[Half]) -> int:
        now = time.time()
        if self.connection is None:
            self.connection = self.engine.connect()
        connection = self.connection
        try:
            with self.metrics.commit_seconds.time(), connection.begin():
                stored = db.store_halves(connection, batch, now) if batch else db.Stored(0, 0)
                added = stored.added
                if now - self.last_sweep > SWEEP_EVERY:
                    added += db.pair(connection)
                    db.expire(connection, now - self.pair_timeout)
                    self.last_sweep = now
                expired = 0
                if self.retain and now - self.last_retain > RETAIN_EVERY:
                    expired = db.retain(connection, now - self.retain)
                    self.last_retain = now
        except Exception:
            self.connection = None  # the next batch starts on a fresh connection (the server may have restarted)
            connection.invalidate()
            raise
        self.metrics.ambiguous.inc(stored.conflicts)
        self.metrics.expired.inc(expired)
        return added

    def _commit_each(self, batch: list[Half]) -> tuple[int, int]:
        """Store ``batch`` one event per transaction; (prediction rows added, events lost)."""
        added = lost = 0
        for half in batch:
            try:
                added += self._commit([half])
            except Exception as e:  # noqa: BLE001 - counted; the others are stored
                logger.error("event %r lost (%s)", half.event_id[:40], _brief(e))
                lost += 1
        return added, lost

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                first = await asyncio.wait_for(self.queue.get(), timeout=SWEEP_EVERY)
                batch = [first]
            except TimeoutError:
                batch = []  # nothing arrived: still sweep and expire
            while batch and len(batch) < BATCH and not self.queue.empty():  # all that came during the last commit
                batch.append(self.queue.get_nowait())
            try:
                added = await loop.run_in_executor(None, self._commit, batch)
            except Exception as e:  # noqa: BLE001 - logged and counted; the writer carries on
                # One bad row must not take the others down: store them one by one, losing only what fails.
                logger.error("storing %d events failed (%s); storing them one by one", len(batch), _brief(e))
                added, lost = await loop.run_in_executor(None, self._commit_each, batch)
                self.metrics.lost.inc(lost)
            self.metrics.predictions.inc(added)
            if self.queue.empty():
                self.settled.set()


def _brief(error: Exception) -> str:
    """An error in a few words: its type and first line, never the SQL or the row it was storing."""
    cause = getattr(error, "orig", None) or error
    return f"{type(cause).__name__}: {str(cause).splitlines()[0][:160] if str(cause) else ''}"


async def _body(receive) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client went away")
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > MAX_BODY_BYTES:
            raise ClientError(f"body: larger than {MAX_BODY_BYTES} bytes", 413)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send(
    send, status: int, content: Any, content_type: bytes = b"application/json", headers: list | None = None
) -> None:
    body = content if isinstance(content, bytes) else orjson.dumps(content)
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class MonitorApp:
    """The ASGI application over an engine from ``db.connect`` (schema up to date)."""

    def __init__(
        self,
        engine,
        pair_timeout: float = 600.0,
        feedback_hold: float = FEEDBACK_HOLD,
        reporter_tokens: dict[str, str] | None = None,
        feedback_limit: RateLimit | None = None,
        proxies: tuple = (),
        retain: float = 0.0,
    ):
        self.engine, self.pair_timeout, self.feedback_hold = engine, pair_timeout, feedback_hold
        self.proxies = proxies  # networks whose X-Real-IP names the client (the page's nginx)
        self.retain = retain  # seconds predictions are kept (0: for ever)
        self.reporter_tokens = reporter_tokens or {}
        self.feedback_limit = feedback_limit or RateLimit(FEEDBACK_RATE, FEEDBACK_BURST)
        self.metrics = Metrics()
        self.metrics.registry.register(LatestReport(engine))
        self.writer: Writer | None = None
        self._task: asyncio.Task | None = None
        self.last_accepted = float("-inf")  # loop time of the last event accepted
        self.held = 0  # feedbacks waiting for their prediction right now
        self.routes = {
            ("POST", "/"): self.event,
            ("POST", "/feedback"): self.feedback,
            ("GET", "/summary"): self.summary,
            ("GET", "/healthz"): self.healthz,
            ("GET", "/readyz"): self.readyz,
            ("GET", "/metrics"): self.prometheus,
        }

    def start(self) -> None:
        self.writer = Writer(self.engine, self.metrics, self.pair_timeout, self.retain)
        self._task = asyncio.get_running_loop().create_task(self.writer.run())

    async def stop(self) -> None:
        if self.writer:
            await self.writer.drain()  # what was accepted gets stored
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.engine.dispose()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] != "http":
            return None
        handler = self.routes.get((scope["method"], scope["path"]))
        if handler is None:
            allowed = [method for method, path in self.routes if path == scope["path"]]
            error = {"error": f"{scope['method']} {scope['path']}: not served here"}
            if allowed:
                return await _send(send, 405, error, headers=[(b"allow", ", ".join(allowed).encode())])
            return await _send(send, 404, error)
        try:
            return await handler(scope, receive, send)
        except ClientError as e:
            return await _send(send, e.status, {"error": str(e)})
        except ConnectionError:
            return None
        except Exception as e:  # noqa: BLE001 - one line, a 503 the logger will retry
            logger.error("%s %s failed: %s", scope["method"], scope["path"], _brief(e))
            return await _send(send, 503, {"error": f"the monitor cannot store this now ({type(e).__name__})"})

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def event(self, scope, receive, send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        kind = KINDS.get(headers.get("ce-type", ""), "unknown")
        body = await _body(receive)
        try:
            if len(body) > PARSE_ON_LOOP:  # a large event is parsed in a thread: /healthz answers meanwhile
                half = await asyncio.get_running_loop().run_in_executor(None, parse_event, headers, body, time.time())
            else:
                half = parse_event(headers, body, time.time())
        except ClientError:
            self.metrics.events.labels(kind, "rejected").inc()
            raise
        except NotAPrediction as e:
            self.metrics.events.labels(kind, "not_prediction").inc()
            return await _send(send, 202, {"kind": kind, "stored": False, "reason": str(e)})
        await self.writer.submit(half)
        self.last_accepted = asyncio.get_running_loop().time()
        self.metrics.events.labels(half.kind, "accepted").inc()
        await _send(send, 202, {"id": half.event_id, "kind": half.kind})

    async def feedback(self, scope, receive, send) -> None:
        """Store feedback for a stored prediction, holding it up to ``FEEDBACK_HOLD`` s for one on its way:
        the payload logger posts a prediction after answering it, so feedback typed at once can come first."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        loop = asyncio.get_running_loop()
        started = loop.time()
        client = client_address(headers, (scope.get("client") or ("",))[0], self.proxies)
        try:
            name = reporter(self.reporter_tokens, headers.get("authorization"))
        except ClientError:  # a wrong token costs the client's allowance, as a report does: no free guessing
            if self.feedback_limit.wait(client, started):
                return await self._limited(send, client, started)
            self.metrics.feedback.labels("unauthorized").inc()
            raise
        if not name and self.feedback_limit.wait(client, started):  # a trusted reporter is not limited
            return await self._limited(send, client, started)
        request_id, row, mpg = parse_feedback(await _body(receive))

        def write() -> bool:
            with self.engine.begin() as connection:
                return db.add_feedback(connection, request_id, row, mpg, client, name)

        while True:
            await self.writer.drain()  # the prediction may have been accepted a moment ago
            if await loop.run_in_executor(None, write):
                break
            # Hold up to feedback_hold s, but past the first FEEDBACK_GRACE s only while predictions keep
            # arriving (this one may be among them), and never more than MAX_HELD_FEEDBACK at once: a
            # feedback for an id nobody served costs a second at most, and a flood cannot pin connections.
            now = loop.time()
            quiet = now - max(started, self.last_accepted) > FEEDBACK_GRACE
            if now - started >= self.feedback_hold or quiet or self.held >= MAX_HELD_FEEDBACK:
                self.metrics.feedback.labels("unknown").inc()
                raise ClientError(
                    f"request_id: no prediction {request_id!r} row {row} is stored: "
                    "check the id (the X-Request-Id of the prediction)",
                    404,
                )
            self.held += 1
            try:
                await asyncio.sleep(FEEDBACK_POLL)
            finally:
                self.held -= 1
        self.metrics.feedback.labels("stored").inc()
        answer = {"request_id": request_id, "row": row, "actual_mpg": round(mpg, 4), "trusted": bool(name)}
        await _send(send, 201, answer)

    async def _limited(self, send, client: str, now: float) -> None:
        self.metrics.feedback.labels("limited").inc()
        wait = self.feedback_limit.wait(client, now, count=False)
        message = f"too many reports from {client}: at most {self.feedback_limit.rate:g} a minute"
        retry = [(b"retry-after", str(max(1, math.ceil(wait))).encode())]
        await _send(send, 429, {"error": f"client: {message}; retry later"}, headers=retry)

    async def summary(self, scope, receive, send) -> None:
        await self.writer.drain()

        def read() -> dict:
            with self.engine.connect() as connection:
                return db.summary(connection)

        await _send(send, 200, await asyncio.get_running_loop().run_in_executor(None, read))

    async def healthz(self, scope, receive, send) -> None:
        await _send(send, 200, {"live": True})

    async def readyz(self, scope, receive, send) -> None:
        def ping() -> None:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")

        try:
            await asyncio.get_running_loop().run_in_executor(None, ping)
        except Exception as e:  # noqa: BLE001 - not ready, and why
            return await _send(send, 503, {"ready": False, "error": f"{type(e).__name__}: {e}"[:300]})
        await _send(send, 200, {"ready": True})

    async def prometheus(self, scope, receive, send) -> None:
        await _send(send, 200, generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST.encode())
