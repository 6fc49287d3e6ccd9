"""Every route the predictor serves, in one table.

The server mounts exactly these (anything else is 404 or 405); the Prometheus figures label answers by their
names (the report reads ``predict`` and ``infer``); the OpenAPI description covers the public ones; the page's
nginx proxies exactly the public ones, by method (nginx.conf is a static file: tests/serving/test_surface.py
checks it against this table, and the Python stand-in reads nginx.conf back).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    name: str  # the handler, the metric label, the OpenAPI operationId
    method: str
    path: str  # with {model_name}
    public: bool  # reachable from outside through the page's nginx
    predicts: bool = False  # answers with predictions: the traffic the monitor's report judges

    def for_model(self, model: str) -> str:
        return self.path.replace("{model_name}", model)


ROUTES = (
    Route("predict", "POST", "/v1/models/{model_name}:predict", public=True, predicts=True),
    Route("v1_model_ready", "GET", "/v1/models/{model_name}", public=False),
    Route("infer", "POST", "/v2/models/{model_name}/infer", public=True, predicts=True),
    Route("metadata", "GET", "/v2/models/{model_name}", public=True),
    Route("ready", "GET", "/v2/models/{model_name}/ready", public=True),
    Route("live", "GET", "/v2/health/live", public=False),
    Route("server_ready", "GET", "/v2/health/ready", public=False),
    Route("metrics", "GET", "/metrics", public=False),
)
PUBLIC = tuple(route for route in ROUTES if route.public)
_MATCHERS = [(re.compile("^" + re.escape(r.path).replace(r"\{model_name\}", "[^/]+") + "$"), r.name) for r in ROUTES]


def route_name(path: str) -> str:
    """The name of the route ``path`` is, or ``other`` (an unknown path: the metric label stays bounded)."""
    return next((name for pattern, name in _MATCHERS if pattern.match(path)), "other")
