"""Write files and directories whole or not at all: build beside the target, then rename over it."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

from core.errors import MlopsError

_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


class OutputPathError(MlopsError):
    """An output file cannot be written where the user asked (missing folder, a directory, no permission)."""


def within(root: Path, relative: Path | str) -> Path:
    """``root / relative``, refused when a symlink on the way leads outside ``root``: a command that edits a
    repository's files writes in that repository, never through a symlinked folder to somewhere else."""
    path = Path(root) / relative
    if not path.resolve().is_relative_to(Path(root).resolve()):
        raise OutputPathError(f"{relative} leads outside {root} (a symlink?): refusing to write through it")
    return path


@cache
def _umask() -> int:
    """The process umask, read once (reading it means setting it, briefly)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path`` and rename it into place.

    If ``write`` raises, or the process dies, ``path`` keeps its previous content
    (or stays absent) and the temporary file is removed when possible. The file gets
    the usual permissions (0666 minus the umask), not the 0600 of a temporary file.
    ``path``'s folder must exist: a missing folder is the caller's error to report.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"cannot write {path}: it is a directory; give a file name")
    if not path.parent.is_dir():
        raise OutputPathError(f"cannot write {path}: the folder {path.parent} does not exist; create it first")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise OutputPathError(f"cannot write {path}: {e.strerror} in {path.parent}; choose a writable folder") from e
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


@cache
def _renameat2():
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    function = getattr(libc, "renameat2", None)
    if function is not None:
        function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return function


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    function = _renameat2()
    if function is None:
        return False
    if function(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    error = ctypes.get_errno()
    if error in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this filesystem or kernel cannot
        return False
    raise OSError(error, os.strerror(error), str(b))


def replace_dir(new: Path, target: Path) -> None:
    """Put directory ``new`` at ``target``; an existing ``target`` ends up at ``new`` for the caller to remove.

    Readers see the old directory or the new one, never neither, where the kernel can
    swap two paths atomically; elsewhere the old one is moved aside first.
    """
    if not target.exists():
        os.rename(new, target)
        return
    if _exchange(new, target):
        return
    aside = target.with_name(f".{target.name}.old")
    os.rename(target, aside)
    os.rename(new, target)
    os.rename(aside, new)
