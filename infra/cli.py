"""The command line's plumbing: the error contract (``MlopsGroup``: one line per error, its exit status), the click
parameter types that parse model URIs and URLs at the boundary, the project as click's context object; and
``mlops publish``."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from core.errors import MlopsError
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


class OneLineUsageError(click.UsageError):
    """click's usage error, shown as one line (click prints the usage block and a hint first)."""

    def show(self, file=None) -> None:
        hint = f" (see '{self.ctx.command_path} --help')" if self.ctx else ""
        click.echo(f"Error: {self.format_message()}{hint}", err=True)


def _debug() -> bool:
    """MLOPS_DEBUG, read without failing: this runs while an error is being reported."""
    from infra.settings import Settings

    try:
        return Settings().debug
    except ValueError:
        return False


class MlopsGroup(click.Group):
    """The error contract: the project's typed errors and click's usage errors as one line each.

    Exit status 1 for an error, 2 for a usage error (see ``core.errors`` for the others).
    """

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MlopsError as e:
            # An error raised with context beside its message (DataValidationError(message, report)) would
            # print as the tuple of both: its message is the first argument.
            raise click.ClickException(str(e.args[0]) if e.args else type(e).__name__) from e
        except OSError as e:  # a path the user gave cannot be read or written
            where = f": {e.filename}" if e.filename else ""
            raise click.ClickException(f"{e.strerror or e}{where}; check the path and its permissions") from e
        except OneLineUsageError:
            raise
        except click.UsageError as e:
            raise OneLineUsageError(e.format_message(), e.ctx) from e
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as e:  # the last resort: a bug is still one line, the traceback on request
            if _debug():
                raise
            raise click.ClickException(
                f"unexpected {type(e).__name__}: {e} (a bug: MLOPS_DEBUG=1 shows the traceback for a report)"
            ) from e


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
