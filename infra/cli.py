"""``mlops publish``, and the click parameter types that parse model URIs at the command-line boundary."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from core.uri import LocalModelDir, ModelURIError, parse_model_uri, parse_repository, parse_store_uri
from infra.overlays import ENVIRONMENTS


class _Parsed(click.ParamType):
    """A click type backed by one of ``core.uri``'s parsers: a bad value is a usage error naming the forms."""

    def __init__(self, name: str, parser):
        self.name, self.parser = name, parser

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            return self.parser(value)
        except (ModelURIError, ValueError) as e:
            self.fail(str(e), param, ctx)


def _champion(text: str):
    """An environment name, a model URI, or a model directory that exists (``prod`` is none of them)."""
    if text in ENVIRONMENTS:
        return text
    parsed = parse_model_uri(text)
    if isinstance(parsed, LocalModelDir) and not parsed.path.exists():
        raise ValueError(f"{text!r} is not {', '.join(ENVIRONMENTS)}, a model URI (s3://...) or a model directory")
    return parsed


def _http_url(text: str, port: bool) -> str:
    """An http(s) URL with a host (and, with ``port``, a port: nginx's upstreams need one)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(text)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port is not None or not port)
    except ValueError:  # a port that is no number
        ok = False
    if not ok:
        raise ValueError(f"{text!r} is not a URL of the form http://HOST{':PORT' if port else '[:PORT]/PATH'}")
    return text


MODEL_URI = _Parsed("uri", parse_model_uri)
#: A model URI, or an environment name meaning "the model that overlay serves".
CHAMPION = _Parsed("uri|staging|production", _champion)
#: A local server's base URL, with its port; any http(s) URL with a host.
HTTP_BASE = _Parsed("http://HOST:PORT", functools.partial(_http_url, port=True))
HTTP_URL = _Parsed("http://HOST[:PORT]/PATH", functools.partial(_http_url, port=False))
STORE_URI = _Parsed("s3://bucket/prefix/id/", parse_store_uri)
REPOSITORY = _Parsed("s3://bucket/prefix", parse_repository)


def current_project():
    """The invocation's ``Project`` (click's context object: made once, on first use)."""
    from infra.project import Project

    return click.get_current_context().ensure_object(Project)


def pass_project(function):
    """Pass the invocation's ``Project`` as the command's first argument."""

    @functools.wraps(function)
    def command(*args, **kwargs):
        return function(current_project(), *args, **kwargs)

    return command


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
@pass_project
def publish_command(project, model_dir, repository):
    """Publish a model directory at s3://<bucket>/<prefix>/<model id>/ and print the URI.

    Content addressed and immutable: publishing the same model again is a no-op that
    prints the same URI; different content at an existing URI is refused. Without
    MLOPS_S3_ENDPOINT_URL the URI maps to a local folder (MLOPS_STORE_ROOT, default
    .mlops/store).

    \b
    Example:
      mlops publish --model models/candidate
    """
    published = project.store.publish(model_dir, repository or project.settings.model_repository)
    click.echo(published.uri)
    if not published.created:
        click.echo("already published: nothing uploaded", err=True)
