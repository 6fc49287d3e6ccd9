"""``mlops serve``: the predictor on this machine, on exactly the model an environment points to."""

from __future__ import annotations

import click

from core.settings import project_root

ENVIRONMENTS = ("staging", "production")


@click.command("serve")
@click.option("--env", type=click.Choice(ENVIRONMENTS), help="Serve the model URI of this overlay.")
@click.option("--model-uri", help="s3:// model URI or model directory (instead of --env).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind; 0.0.0.0 in a container.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--model-name", default="mpg", show_default=True, help="Name in the URL: /v1/models/<name>:predict.")
def serve_command(env, model_uri, host, port, model_name):
    """Serve the model over KServe's V1 and V2 REST protocols until SIGINT/SIGTERM.

    With --env the URI comes from the rendered overlay (k8s/overlays/<env>), so local
    serving serves exactly what that environment's manifests point to. s3:// URIs are
    read through the model store (the local folder unless MLOPS_S3_ENDPOINT_URL is set).

    \b
    Example:
      mlops serve --env staging
      curl -s localhost:8080/v1/models/mpg:predict -d '{"instances": [[4, 140, 90, 2800, 15.5, 1976, 1]]}'
    """
    from core.manifests import overlay_model_uri
    from core.settings import Settings
    from core.store import open_store
    from serving.predictor import MpgModel
    from serving.server import serve

    if bool(env) == bool(model_uri):
        raise click.UsageError("give exactly one of --env or --model-uri")
    uri = model_uri or overlay_model_uri(project_root() / "k8s" / "overlays" / env)
    click.echo(f"serving {uri} as {model_name} on http://{host}:{port}", err=True)
    serve([MpgModel(model_name, uri, open_store(Settings.from_env()))], host=host, port=port)
