"""``mlops publish``, and the click parameter types that parse model URIs at the command-line boundary."""

from __future__ import annotations

from pathlib import Path

import click

from core.overlays import ENVIRONMENTS
from core.uri import ModelURIError, parse_model_uri, parse_repository, parse_store_uri


class _Parsed(click.ParamType):
    """A click type backed by one of ``core.uri``'s parsers: a bad value is a usage error naming the forms."""

    def __init__(self, name: str, parser):
        self.name, self.parser = name, parser

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            return self.parser(value)
        except ModelURIError as e:
            self.fail(str(e), param, ctx)


MODEL_URI = _Parsed("uri", parse_model_uri)
#: A model URI, or an environment name meaning "the model that overlay serves".
CHAMPION = _Parsed("uri|staging|production", lambda text: text if text in ENVIRONMENTS else parse_model_uri(text))
STORE_URI = _Parsed("s3://bucket/prefix/id/", parse_store_uri)
REPOSITORY = _Parsed("s3://bucket/prefix", parse_repository)


@click.command("publish")
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option(
    "--to",
    "repository",
    type=REPOSITORY,
    default=None,
    metavar="s3://BUCKET/PREFIX",
    help="Model repository [default: MLOPS_MODEL_REPOSITORY or s3://mpg-mlops/models/mpg].",
)
def publish_command(model_dir, repository):
    """Publish a model directory at s3://<bucket>/<prefix>/<model id>/ and print the URI.

    Content addressed and immutable: publishing the same model again is a no-op that
    prints the same URI; different content at an existing URI is refused. Without
    MLOPS_S3_ENDPOINT_URL the URI maps to a local folder (MLOPS_STORE_ROOT, default
    .mlops/store).

    \b
    Example:
      mlops publish --model models/candidate
    """
    from core.settings import Settings
    from core.store import open_store

    settings = Settings.from_env()
    published = open_store(settings).publish(model_dir, repository or settings.model_repository)
    click.echo(published.uri)
    if not published.created:
        click.echo("already published: nothing uploaded", err=True)
