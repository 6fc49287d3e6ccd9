"""The installs the serving benchmark compares, each in a virtualenv of its own built with uv.

- ``serving``: ``pip install .``, the predictor's dependency set (the serving image);
- ``platform``: ``pip install '.[platform]'``, every command's (the project image);
- ``mlserver``: MLServer and mlserver-sklearn (``bench/mlserver-requirements.txt``) with the
  project's scikit-learn stack and the project itself, without its dependencies.

The project is installed from a copy of the sources without ``bench/`` (what the Dockerfile copies):
building in place would leave ``build/`` behind.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from bench.worktree import copy_worktree
from core.errors import MlopsError

KINDS = ("serving", "platform", "mlserver")
MLSERVER_REQUIREMENTS = Path(__file__).with_name("mlserver-requirements.txt")
#: What the pickled model needs at the versions it was trained with, in MLServer's environment too.
SHARED_PINS = ("scikit-learn", "scipy", "numpy", "joblib", "threadpoolctl")


class EnvError(MlopsError):
    """A benchmark environment could not be built."""


def _run(*args, cwd: Path) -> None:
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise EnvError(f"{' '.join(map(str, args[:4]))} … failed: {result.stderr.strip()[-500:]}")


def source_copy(root: Path, dest: Path) -> Path:
    """The sources the image copies: a clone's files without the development-only ``bench/``."""
    copy = copy_worktree(root, dest)
    shutil.rmtree(copy / "bench")
    return copy


def shared_pins(constraints: Path) -> list[str]:
    """``name==version`` from constraints.txt for each of ``SHARED_PINS``."""
    text = constraints.read_text()
    pins = []
    for name in SHARED_PINS:
        match = re.search(rf"^{re.escape(name)}==(\S+)", text, re.MULTILINE | re.IGNORECASE)
        if match is None:
            raise EnvError(f"constraints.txt pins no {name}")
        pins.append(f"{name}=={match[1]}")
    return pins


def build(kind: str, source: Path, dest: Path) -> Path:
    """A new virtualenv at ``dest`` holding ``kind``'s install (bytecode compiled, as in the image); its python."""
    uv = Path(sys.executable).parent / "uv"
    _run(uv, "venv", "-q", "--python", sys._base_executable, dest, cwd=source)
    python = dest / "bin" / "python"
    install = [uv, "pip", "install", "-q", "--compile-bytecode", "--python", python]
    if kind == "mlserver":
        _run(*install, "-r", MLSERVER_REQUIREMENTS, *shared_pins(source / "constraints.txt"), cwd=source)
        _run(*install, "--no-deps", source, cwd=source)
    else:
        extra = {"serving": "", "platform": "[platform]"}[kind]
        _run(*install, "-c", source / "constraints.txt", f"{source}{extra}", cwd=source)
    return python


def size(venv: Path) -> int:
    """Bytes of the files in ``venv`` (symlinks not followed, each file once)."""
    total = 0
    for folder, _, files in os.walk(venv):
        for name in files:
            path = Path(folder, name)
            if not path.is_symlink():
                total += path.stat().st_size
    return total
