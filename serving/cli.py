"""``mlops serve``: the predictor on this machine, on exactly the model an environment points to."""

from __future__ import annotations

import click

from core.errors import MlopsError
from infra.cli import HTTP_BASE, HTTP_URL, MODEL_URI, current_project, pass_project
from infra.overlays import ENVIRONMENTS


@click.command("serve")
@click.option("--env", type=click.Choice(ENVIRONMENTS), help="Serve the model URI of this overlay.")
@click.option("--model-uri", type=MODEL_URI, help="s3:// model URI or model directory (instead of --env).")
@click.option(
    "--source-uri",
    help="The store URI a model directory was downloaded from; the model must hash to its id "
    "(the ServingRuntime passes the InferenceService's storageUri) [default: MLOPS_MODEL_SOURCE_URI].",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind; 0.0.0.0 in a container.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--model-name", default="mpg", show_default=True, help="Name in the URL: /v1/models/<name>:predict.")
@click.option(
    "--access-log", is_flag=True, help="Log every request (off: per-request logging costs more than a prediction)."
)
@click.option(
    "--log-url",
    type=HTTP_URL,
    help="Post every prediction to this monitor as KServe's payload logger would (local runs; "
    "in the cluster the InferenceService's logger does it).",
)
@click.option(
    "--receive-timeout",
    type=click.FloatRange(0.1, 600),
    default=10.0,
    show_default=True,
    help="Seconds a client has to send a whole request (408 after).",
)
@pass_project
def serve_command(project, env, model_uri, source_uri, host, port, model_name, access_log, log_url, receive_timeout):
    """Serve the model over KServe's V1 and V2 REST protocols until SIGINT/SIGTERM.

    With --env the URI comes from the overlay's model file (k8s/overlays/<env>/model.yaml,
    the one line its InferenceService's storageUri is set from), so local serving serves
    exactly what that environment's manifests point to. s3:// URIs are
    read through the model store (the local folder unless MLOPS_S3_ENDPOINT_URL is set).
    A model that cannot be loaded leaves the server up and not ready, with the reason
    logged once and answered on /v2/health/live (503).

    \b
    Example:
      mlops serve --env staging
      curl -s localhost:8080/v1/models/mpg:predict -d '{"instances": [[4, 140, 90, 2800, 15.5, 1976, 1]]}'
    """
    from core.uri import LocalModelDir, parse_store_uri
    from serving.payload_log import PayloadLog
    from serving.predictor import MpgModel
    from serving.server import serve

    if bool(env) == bool(model_uri):
        raise click.UsageError("give exactly one of --env or --model-uri")
    if isinstance(model_uri, LocalModelDir) and not model_uri.path.is_dir():
        raise click.BadParameter(f"{model_uri} is not a directory; give a model directory", param_hint="--model-uri")
    source_uri = source_uri or project.settings.model_source_uri
    if source_uri is not None:
        try:
            parse_store_uri(source_uri)
        except MlopsError as e:
            raise click.BadParameter(str(e), param_hint="--source-uri") from e
    uri = str(project.model_ref(model_uri or env))
    model = MpgModel(model_name, uri, project.store, source_uri)
    serve(
        [model],
        host=host,
        port=port,
        access_log=access_log,
        announce=lambda url: click.echo(f"serving {uri} as {model_name} on {url}", err=True),
        receive_timeout=receive_timeout,
        payload_log=PayloadLog(log_url, model_name, f"mpg-{env}" if env else "local") if log_url else None,
    )


class ClientStoppedError(MlopsError):
    """The client's web server stopped without being asked to."""


@click.command("client")
@click.option(
    "--predictor", type=HTTP_BASE, default="http://127.0.0.1:8080", show_default=True, help="Predictor base URL."
)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--monitor",
    type=HTTP_BASE,
    default="http://127.0.0.1:8081",
    show_default=True,
    help="Monitor base URL (feedback goes there).",
)
@click.option("--python", "use_python", is_flag=True, help="Use the Python stand-in even if nginx is installed.")
def client_command(predictor, port, monitor, use_python):
    """Serve the client page on 127.0.0.1, proxying the API routes to the predictor and /feedback to the monitor.

    Uses nginx with the repo's nginx.conf when nginx is installed, otherwise a Python
    stand-in that serves the same files with the same headers.

    \b
    Example:
      mlops serve --env staging &  mlops client --port 8000   # then open http://127.0.0.1:8000/
    """

    from infra.http import bind, interrupt_once_on_signals
    from infra.nginx import nginx_binary, running_nginx
    from serving.page import fallback_server

    # SIGINT too, explicitly: a background job of a script starts with SIGINT ignored, and nginx, which
    # resets its own handlers, would then stop on a Ctrl-C to the process group while we reported an error.
    interrupt_once_on_signals()  # the same clean exit for Ctrl-C and SIGTERM
    bind("127.0.0.1", port).close()  # a busy port is one line now, not after a success message
    client_dir = current_project().root / "k8s" / "base" / "client"
    try:
        if nginx_binary() and not use_python:
            with running_nginx(client_dir, predictor, port, monitor) as process:
                click.echo(f"client (nginx) on http://127.0.0.1:{port}/ -> {predictor}", err=True)
                process.wait()
            raise ClientStoppedError(f"nginx stopped on its own (status {process.returncode})")
        server = fallback_server(client_dir, predictor, port, monitor)
        click.echo(f"client (Python stand-in for nginx) on http://127.0.0.1:{port}/ -> {predictor}", err=True)
        with server:
            server.serve_forever()
    except KeyboardInterrupt:
        click.echo("client stopped", err=True)
