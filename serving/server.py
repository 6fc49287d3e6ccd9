"""Run KServe's model server for one model, on a chosen interface (loopback by default).

kserve's ``ModelServer`` keeps the model registry and the data plane; the HTTP side
is ours, for four reasons:

- only the routes clients need are served (``serving.routes.ROUTES``): kserve's model-repository
  extension (``/v2/repository/models/<name>/load|unload``) would let any caller unload
  the model, and ``:explain`` or ``/versions/...`` answer 501;
- every client mistake is a 4xx with a JSON ``error`` naming it, and is logged in at
  most one line (kserve logs a traceback per 400);
- request limits (``infra.http``): body, header bytes, time to receive a request;
- liveness means something: 503 once the model failed to load (see ``live``).

``sys.argv`` is cleared before kserve is imported (it parses it on import) and the
log levels are set after ``ModelServer`` is constructed (which reconfigures logging).
"""

import asyncio
import contextlib
import functools
import inspect
import itertools
import logging
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
from starlette.requests import Request

from infra.http import RECEIVE_TIMEOUT, BodyLimit, bind, exit_on_signals, server_config
from serving.payload_log import PayloadLog
from serving.routes import ROUTES, route_name
from serving.schema import InvalidRequestError, decode_v2

logger = logging.getLogger(__name__)
QUIET = ("uvicorn.access", "kserve.trace")
#: The model server subclasses kserve's ModelServer and mounts its own app over ModelServer.dataplane and
#: .registered_models (attributes, not API): checked against this version (tests/unit/test_library_internals.py).
CHECKED = {"kserve": "0.21.0"}


def _json(status: int, content: Any, headers: dict[str, str] | None = None):
    from starlette.responses import Response

    return Response(orjson.dumps(content), status, headers=headers, media_type="application/json")


REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,200}")


def _same_model(decoded, model_name: str, model) -> None:
    """KServe's client names the model in the body too: it must be the one the URL names (and, with a version,
    one of that model's versions: its card id, as the metadata lists it)."""
    if decoded.model_name is not None and decoded.model_name != model_name:
        raise InvalidRequestError(f"model_name: {decoded.model_name!r} is not the model the URL names, {model_name!r}")
    card = getattr(model, "card", None)
    if decoded.model_version is not None and (card is None or decoded.model_version != card.id):
        raise InvalidRequestError(
            f"model_version: {decoded.model_version!r} is not a version of {model_name} (GET /v2/models/{model_name} "
            "lists them)"
        )


class Traffic:
    """Prometheus figures of every answer, errors included (kserve's histograms time predictions only)."""

    def __init__(self):
        from prometheus_client import Counter, Histogram

        self.answers = Counter("mpg_http_requests", "HTTP answers by route and status", ["route", "status"])
        self.seconds = Histogram(
            "mpg_http_request_seconds",
            "Seconds from request to answer, by route",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )

    def middleware(self, app):
        async def counted(scope, receive, send):
            if scope["type"] != "http":
                return await app(scope, receive, send)
            started, route, status = time.perf_counter(), route_name(scope["path"]), [500]

            async def sending(message):
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            try:
                await app(scope, receive, sending)
            finally:
                self.answers.labels(route, str(status[0])).inc()
                self.seconds.labels(route).observe(time.perf_counter() - started)

        return counted


@functools.cache
def traffic() -> Traffic:
    """One set of counters per process (Prometheus refuses a second registration)."""
    return Traffic()


@functools.cache
def _id_source() -> Iterator[str]:
    """New request ids: 16 random hex digits per process, then a counter. Unique like ``uuid4().hex`` (same
    length) without a ``getrandom`` system call per request, which py-spy showed at 4 % of a request's time."""
    prefix = os.urandom(8).hex()
    return (f"{prefix}{n:016x}" for n in itertools.count())


def _new_request_id() -> str:
    return next(_id_source())


def request_id_of(headers: dict[str, str]) -> str:
    """The id payload logging and feedback use: ``Ce-Id`` (what KServe's logger takes as the event
    id), else ``X-Request-Id``, else a new one; checked either way."""
    name = "ce-id" if "ce-id" in headers else "x-request-id"
    given = headers.get(name)
    if given is None:
        return _new_request_id()
    if not REQUEST_ID.fullmatch(given):
        raise InvalidRequestError(f"{name}: at most 200 letters, digits and ._:- characters")
    return given


class Handlers:
    """One method per route of ``serving.routes.ROUTES``, by its name, over kserve's data plane and registry."""

    def __init__(self, dataplane, registry, payload_log: PayloadLog | None):
        self.dataplane, self.registry, self.payload_log = dataplane, registry, payload_log

    def _answer(self, request_id: str, body: bytes, content) -> Any:
        from starlette.responses import Response

        encoded = orjson.dumps(content)
        if self.payload_log:
            self.payload_log.emit(request_id, body, encoded)
        return Response(encoded, 200, headers={"X-Request-Id": request_id}, media_type="application/json")

    def _ready_model(self, model_name: str):
        from kserve.errors import ModelNotFound, ModelNotReady

        model = self.registry.get_model(model_name)
        if model is None:
            raise ModelNotFound(model_name)
        if not model.ready:
            raise ModelNotReady(model_name, getattr(model, "load_error", None) or "")
        return model

    async def predict(self, request: Request):
        model_name = request.path_params["model_name"]
        model = self._ready_model(model_name)
        body, headers = await request.body(), dict(request.headers)
        request_id = request_id_of(headers)
        try:
            payload = orjson.loads(body)  # whatever the content type: curl's default is a form type
        except orjson.JSONDecodeError as e:
            raise InvalidRequestError(f"body: not valid JSON ({e})") from e
        return self._answer(request_id, body, await _predicted(model, payload, headers))

    async def infer(self, request: Request):
        model_name = request.path_params["model_name"]
        model = self._ready_model(model_name)
        body, headers = await request.body(), dict(request.headers)
        request_id = request_id_of(headers)
        decoded = decode_v2(body, headers.get("inference-header-content-length"))
        _same_model(decoded, model_name, model)
        if hasattr(model, "infer_json"):  # this project's model: the answer directly, no kserve objects between
            return self._answer(request_id, body, model.infer_json(decoded))
        from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput

        inputs = [InferInput(i.name, i.shape, i.datatype, i.data) for i in decoded.inputs]
        outputs = None if decoded.outputs is None else [RequestedOutput(name) for name in decoded.outputs]
        infer_request = InferRequest(
            model_name, inputs, request_id=decoded.id, parameters=decoded.parameters, request_outputs=outputs
        )
        rest, _ = (await _predicted(model, infer_request, headers)).to_rest()
        return self._answer(request_id, body, rest)

    async def metadata(self, request: Request):
        model_name = request.path_params["model_name"]
        card = getattr(self.registry.get_model(model_name), "card", None)
        content = await self.dataplane.model_metadata(model_name)  # ModelNotFound for an unknown name
        return _json(200, {**content, "versions": [card.id] if card else []})

    async def ready(self, request: Request):
        model_name = request.path_params["model_name"]
        self._ready_model(model_name)
        return _json(200, {"name": model_name, "ready": True})

    async def v1_model_ready(self, request: Request):
        # GET /v1/models/mpg:predict lands here (a path segment may hold ":"): the route exists, for POST
        if request.path_params["model_name"].endswith(":predict"):
            return _json(405, {"error": "GET: /v1/models/<name>:predict takes POST"}, {"Allow": "POST"})
        return await self.ready(request)

    async def live(self, _request: Request):
        failed = [m for m in self.registry.get_models().values() if getattr(m, "load_error", None)]
        if failed:
            reason = f"model {failed[0].name} failed to load: {failed[0].load_error}"
            return _json(503, {"live": False, "error": reason})
        return _json(200, {"live": True})

    async def server_ready(self, _request: Request):
        models = list(self.registry.get_models().values())
        if not models or not all(m.ready for m in models):
            return _json(503, {"ready": False})
        return _json(200, {"ready": True})

    async def metrics(self, request: Request):
        from kserve.protocol.rest.server import metrics_handler

        return await metrics_handler(request)


async def _predicted(model, payload, headers: dict[str, str]):
    """``model.predict``, called directly: kserve's ``Model.__call__`` wraps it in pre- and postprocess hooks no
    model here has, three Prometheus histograms and a latency log (the server's own figures are ``Traffic``)."""
    result = model.predict(payload, headers)
    return await result if inspect.isawaitable(result) else result


def _error_handlers() -> list[tuple[type[BaseException], Callable]]:
    """Each error as one JSON line with its status: the client's errors named, a bug a 500 that says so."""
    from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect

    from serving.predictor import PayloadTooLarge

    def client_error(default_status: int):
        async def handler(_request, exc):  # not logged: the access log, when on, has the status
            return _json(getattr(exc, "status", default_status), {"error": str(exc)})

        return handler

    async def http_error(_request, exc: HTTPException):
        return _json(exc.status_code, {"error": str(exc.detail)}, exc.headers)

    async def disconnected(_request, _exc):
        return _json(499, {"error": "client closed the connection"})

    async def server_error(_request, exc: Exception):
        logger.error("internal error: %s: %s", type(exc).__name__, exc, exc_info=logger.isEnabledFor(logging.DEBUG))
        return _json(500, {"error": f"internal error ({type(exc).__name__}); see the predictor log"})

    return [
        (PayloadTooLarge, client_error(413)),
        (InvalidInput, client_error(400)),
        (InvalidRequestError, client_error(400)),
        (ModelNotFound, client_error(404)),
        (ModelNotReady, client_error(503)),
        (HTTPException, http_error),
        (ClientDisconnect, disconnected),
        (Exception, server_error),
    ]


def build_app(dataplane, registry, payload_log: PayloadLog | None = None) -> Any:
    """The FastAPI app: ``ROUTES`` over kserve's data plane, with this project's error handling.

    Every prediction answers with ``X-Request-Id`` (the caller's, or a new one) and,
    with a ``payload_log``, is logged as KServe's logger would.
    """
    from starlette.applications import Starlette
    from starlette.routing import Route

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        if payload_log:
            payload_log.start()
        yield
        if payload_log:
            await payload_log.stop()

    handlers = Handlers(dataplane, registry, payload_log)
    # Starlette, not FastAPI: no dependency resolution per request (the handlers read what they need), measured
    # at tens of microseconds of a request's few hundred
    app = Starlette(
        routes=[Route(r.path, getattr(handlers, r.name), methods=[r.method]) for r in ROUTES],
        exception_handlers=dict(_error_handlers()),
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit)
    return traffic().middleware(app)


def _model_server_class():
    sys.argv = sys.argv[:1]  # kserve.model_server parses sys.argv when imported
    import uvicorn
    from kserve import ModelServer

    class HostModelServer(ModelServer):
        """kserve's ModelServer with this module's app, on ``host``; a model that failed to load stays registered."""

        def __init__(self, host: str, access_log: bool, receive_timeout: float, payload_log=None, **kwargs):
            super().__init__(enable_grpc=False, **kwargs)
            self.host, self.access_log, self.receive_timeout = host, access_log, receive_timeout
            self.payload_log = payload_log

        def start(self, models, sock: socket.socket) -> None:
            for model in models:
                model.enable_latency_logging = False
                self.register_model(model)  # registered even when not ready: /ready says why not
            config = server_config(
                build_app(self.dataplane, self.registered_models, self.payload_log),
                receive_timeout=self.receive_timeout,
                keep_alive=self.timeout_keep_alive,
                access_log=self.access_log,
                host=self.host,
                port=self.http_port,
                log_config=None,
                timeout_graceful_shutdown=self.grace_period,
                loop=self.event_loop,
            )
            asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))

    return HostModelServer


def _log_to_stderr(level: int) -> None:
    log = logging.getLogger("serving")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False


def serve(
    models: list,
    host: str = "127.0.0.1",
    port: int = 8080,
    access_log: bool = False,
    announce: Callable[[str], None] | None = None,
    receive_timeout: float = RECEIVE_TIMEOUT,
    payload_log: PayloadLog | None = None,
) -> None:
    """Load ``models`` (each ``load()`` logs and stays not ready on failure) and serve them until SIGINT/SIGTERM.

    The port is bound first, so a busy port is one clear error before any work. uvicorn
    shuts down gracefully on either signal, then re-raises it with the handlers it found
    at start; these handlers make that a normal exit (status 0).
    """
    sock = bind(host, port)
    if announce:
        bound_host, bound_port = sock.getsockname()[:2]
        announce(f"http://{bound_host}:{bound_port}")
    exit_on_signals()
    server_class = _model_server_class()
    server = server_class(
        host=host,
        access_log=access_log,
        receive_timeout=receive_timeout,
        payload_log=payload_log,
        http_port=port,
        enable_latency_logging=False,
    )
    # ModelServer's constructor configures logging: only now do levels set here stick.
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.INFO if access_log else logging.WARNING)
    _log_to_stderr(logging.INFO)
    for model in models:
        model.load()
    server.start(models, sock)
