"""The git plumbing GitOps needs: run git, read files at a revision, a file's history.

Credentials come from ``infra.gitauth`` (``GIT_ASKPASS``), never from a URL; every
message is scrubbed of URL credentials.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

from core.errors import MlopsError
from infra.gitauth import credentials_env, scrub

BOT_NAME, BOT_EMAIL = "mpg-mlops bot", "mlops-bot@localhost"
HISTORY_LIMIT = 500  # commits searched for a file's earlier model URIs


class GitError(MlopsError):
    """A git command failed; the message is git's own reason, scrubbed of credentials."""


def _env() -> dict[str, str]:
    env = {**os.environ, **credentials_env()}
    env.setdefault("GIT_AUTHOR_NAME", env.get("GIT_COMMITTER_NAME", BOT_NAME))
    env.setdefault("GIT_AUTHOR_EMAIL", env.get("GIT_COMMITTER_EMAIL", BOT_EMAIL))
    env.setdefault("GIT_COMMITTER_NAME", env["GIT_AUTHOR_NAME"])
    env.setdefault("GIT_COMMITTER_EMAIL", env["GIT_AUTHOR_EMAIL"])
    return env


def git(*args: str, cwd: Path, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    """Run ``git args`` in ``cwd``; a failure (with ``check``) is a ``GitError`` quoting git's last words."""
    try:
        result = subprocess.run(
            ["git", *args], cwd=cwd, env=_env(), capture_output=True, text=True, input=input, timeout=300
        )
    except FileNotFoundError as e:
        raise GitError("git is not installed (Debian: apt-get install git)") from e
    except subprocess.TimeoutExpired as e:
        raise GitError(f"git {args[0]} did not finish within 300 s") from e
    if check and result.returncode != 0:
        reason = [line for line in result.stderr.splitlines() if line.strip()][-3:] or ["(no message)"]
        raise GitError(scrub(f"git {args[0]} failed: {' / '.join(line.strip() for line in reason)}"))
    return result


def toplevel(path: Path) -> Path:
    """The root of the git work tree holding ``path``."""
    try:
        return Path(git("rev-parse", "--show-toplevel", cwd=path).stdout.strip())
    except GitError as e:
        raise GitError(f"{path} is not inside a git repository: GitOps commands edit a clone of it") from e


def show(root: Path, revision: str, path: Path | str) -> str | None:
    """A file's text at ``revision`` (None where it did not exist)."""
    result = git("show", "--end-of-options", f"{revision}:{Path(path).as_posix()}", cwd=root, check=False)
    return result.stdout if result.returncode == 0 else None


def blob(root: Path, revision: str, path: Path | str) -> bytes | None:
    """A file's bytes at ``revision`` (None where it did not exist)."""
    spec = f"{revision}:{Path(path).as_posix()}"
    command = ["git", "cat-file", "blob", "--end-of-options", spec]
    result = subprocess.run(command, cwd=root, env=_env(), capture_output=True, timeout=300)
    return result.stdout if result.returncode == 0 else None


def export(root: Path, revision: str, dest: Path, *paths: str) -> None:
    """The files of ``revision`` (or only ``paths`` of it) written under ``dest`` (``git archive``): a commit's
    content without a checkout, dated at the commit."""
    command = ["git", "archive", "--end-of-options", revision, *paths]
    archive = subprocess.run(command, cwd=root, env=_env(), capture_output=True, timeout=300)
    if archive.returncode != 0:
        where = f"{', '.join(paths)} at" if paths else "the files of"
        raise GitError(scrub(f"cannot read {where} {revision!r}: {archive.stderr.decode().strip()}"))
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")


def history(root: Path, path: Path | str, revision: str = "HEAD") -> list[tuple[str, str]]:
    """(commit, subject) of the commits that touched ``path``, newest first."""
    result = git(
        "log",
        f"-{HISTORY_LIMIT}",
        "--format=%H%x09%s",
        "--end-of-options",
        revision,
        "--",
        Path(path).as_posix(),
        cwd=root,
        check=False,
    )
    return [tuple(line.split("\t", 1)) for line in result.stdout.splitlines() if "\t" in line]


def not_an_option(value: str, what: str) -> str:
    """``value`` as git will read it: a name, never an option. Every value a user gives for a ref, a branch or a
    remote passes here first (and git calls end their options with --end-of-options or --): ``--remote
    '--upload-pack=touch F'`` would otherwise run a command, ``--base --output=F`` write a file."""
    if not value or value.startswith("-") or not value.isprintable():
        raise GitError(f"{what} {value!r}: must be a name, not empty, not starting with '-', no control characters")
    return value


def branch_name(value: str, what: str = "branch") -> str:
    """A valid branch name (git check-ref-format --branch), refused in one line otherwise."""
    not_an_option(value, what)
    result = subprocess.run(["git", "check-ref-format", "--branch", value], capture_output=True, text=True)
    if result.returncode != 0:
        raise GitError(f"{what} {value!r} is not a valid branch name (git check-ref-format)")
    return value
