"""A STAND-IN for the Kubeflow Pipelines API server (no KFP API server runs here).

It implements only the v2beta1 REST routes ``kfp.Client.create_run_from_pipeline_package``
calls, records every request, and answers 404 to anything else, so a test fails if the
client starts calling a route this stand-in does not know. Responses carry the fields
the real server returns for these calls (kfp_server_api's V2beta1Experiment/V2beta1Run).
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PREFIX = "/apis/v2beta1"


class KfpStandIn:
    def __init__(self, version: str = "2.5.0", multi_user: bool = False):
        self.healthz = {"commit_sha": "standin", "tag_name": version, "multi_user": multi_user}
        self.requests: list[dict] = []
        self.experiments: dict[str, dict] = {}
        self.runs: list[dict] = []
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self) -> dict:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                url = urlparse(self.path)
                entry = {
                    "method": self.command,
                    "path": url.path,
                    "query": parse_qs(url.query),
                    "body": body,
                    "authorization": self.headers.get("Authorization"),
                }
                standin.requests.append(entry)
                return entry

            def do_GET(self):  # noqa: N802 - http.server's naming
                entry = self._record()
                if entry["path"] == f"{PREFIX}/healthz":
                    return self._reply(200, standin.healthz)
                if entry["path"] == f"{PREFIX}/experiments":
                    wanted = json.dumps(entry["query"].get("filter", [""])[0])
                    found = [e for name, e in standin.experiments.items() if json.dumps(name) in wanted]
                    return self._reply(200, {"experiments": found, "total_size": len(found)})
                return self._reply(404, {"error": f"stand-in has no route GET {entry['path']}"})

            def do_POST(self):  # noqa: N802
                entry = self._record()
                if entry["path"] == f"{PREFIX}/experiments":
                    experiment = {"experiment_id": str(uuid.uuid4()), **entry["body"]}
                    standin.experiments[entry["body"]["display_name"]] = experiment
                    return self._reply(200, experiment)
                if entry["path"] == f"{PREFIX}/runs":
                    run = {"run_id": str(uuid.uuid4()), "state": "PENDING", **entry["body"]}
                    standin.runs.append(run)
                    return self._reply(200, run)
                return self._reply(404, {"error": f"stand-in has no route POST {entry['path']}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> KfpStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
