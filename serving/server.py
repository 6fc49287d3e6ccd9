"""Run KServe's model server for one model, on a chosen interface (loopback by default).

kserve's ``ModelServer`` binds 0.0.0.0 and parses ``sys.argv`` when
``kserve.model_server`` is first imported; ``serve`` clears the arguments first and
sets the REST server's host itself. It also caps request bodies (413), answers
too-large batches with 413, and puts the model id in the V2 metadata (``versions``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from typing import Any

logger = logging.getLogger(__name__)
MAX_BODY_BYTES = 1 << 20


class BodyLimit:
    """ASGI middleware: 413 for request bodies over ``limit`` bytes, declared or streamed."""

    def __init__(self, app, limit: int = MAX_BODY_BYTES):
        self.app, self.limit = app, limit

    async def _reject(self, send) -> None:
        body = json.dumps({"error": f"request body larger than {self.limit} bytes"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
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


def _kserve_classes():
    sys.argv = sys.argv[:1]  # kserve.model_server parses sys.argv when imported
    from fastapi.responses import JSONResponse
    from kserve import ModelServer
    from kserve.model_server import app
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.rest.server import RESTServer

    from serving.predictor import PayloadTooLarge

    class MetadataDataPlane(DataPlane):
        async def model_metadata(self, model_name: str) -> dict[str, Any]:
            metadata = await super().model_metadata(model_name)
            card = getattr(self.get_model_from_registry(model_name), "card", None)
            return {**metadata, "versions": [card.id] if card else []}

    async def too_large(_request, exc):
        return JSONResponse(status_code=413, content={"error": str(exc)})

    class HostModelServer(ModelServer):
        """kserve's ModelServer, REST only, on ``host``; a model that failed to load stays registered, not ready."""

        def __init__(self, host: str, **kwargs):
            super().__init__(enable_grpc=False, **kwargs)
            self.host = host
            self.dataplane = MetadataDataPlane(model_registry=self.registered_models)

        def start(self, models) -> None:
            for model in models:
                self.register_model(model)  # registered even when not ready: /ready says why not
            rest = RESTServer(
                "kserve.model_server:app",
                self.dataplane,
                self.model_repository_extension,
                self.http_port,
                grace_period=self.grace_period,
                event_loop=self.event_loop,
                timeout_keep_alive=self.timeout_keep_alive,
            )
            rest.config.host = self.host
            app.add_middleware(BodyLimit)
            app.add_exception_handler(PayloadTooLarge, too_large)
            self.servers.append(rest.start())
            self.setup_event_loop()
            asyncio.run(self._serve())

    return HostModelServer


def _exit_cleanly(signum, _frame) -> None:
    raise SystemExit(0)


def serve(models: list, host: str = "127.0.0.1", port: int = 8080, access_log: bool = False) -> None:
    """Load ``models`` (each ``load()`` logs and stays not ready on failure) and serve them until SIGINT/SIGTERM.

    uvicorn shuts down gracefully on either signal, then re-raises it with the handlers
    it found at start; these handlers make that a normal exit (status 0).
    """
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _exit_cleanly)
    server_class = _kserve_classes()
    if not access_log:
        # Three log lines per request (uvicorn access + kserve timing) cost more than the
        # prediction; latency and counts stay available on /metrics.
        for name in ("uvicorn.access", "kserve.trace"):
            logging.getLogger(name).setLevel(logging.WARNING)
    for model in models:
        model.load()
    server_class(host=host, http_port=port, enable_latency_logging=False).start(models)
