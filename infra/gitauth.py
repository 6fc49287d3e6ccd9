"""Git credentials from the environment, never in a URL, a message or a log.

A token (``MLOPS_GIT_TOKEN``, mounted from a Secret in the cluster) reaches git
through ``GIT_ASKPASS``: git, and the dulwich client DVC clones with, run the
``mlops-git-askpass`` program when a server asks for credentials, and it answers
from the environment. Clone URLs stay plain, so an error that quotes a URL quotes no
secret; ``scrub`` removes credentials a user wrote into a URL before it is printed.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from infra.settings import Settings

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")


def scrub(text: str) -> str:
    """``text`` with the user-info part of every URL in it replaced by ``***``."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


def askpass_program() -> str:
    """The ``mlops-git-askpass`` executable installed beside this Python."""
    beside = Path(sys.executable).parent / "mlops-git-askpass"
    return str(beside) if beside.is_file() else (shutil.which("mlops-git-askpass") or "mlops-git-askpass")


def credentials_env() -> dict[str, str]:
    """Variables that make git and dulwich ask ``mlops-git-askpass`` (never a terminal) for credentials."""
    if Settings().git_token is None:
        return {"GIT_TERMINAL_PROMPT": "0"}
    return {"GIT_ASKPASS": askpass_program(), "GIT_TERMINAL_PROMPT": "0"}


def askpass() -> None:
    """Entry point of ``mlops-git-askpass PROMPT``: the user name or the token, as git asks."""
    prompt = sys.argv[1] if len(sys.argv) > 1 else ""
    settings = Settings()
    if prompt.lower().startswith("username"):
        print(settings.git_username)
    else:
        print(settings.git_token.get_secret_value() if settings.git_token else "")
