"""Safe file output: write to a temporary file beside the target, then rename.

The rename replaces whatever was at the target, so the target must be a regular file (or
nothing): a symlink, FIFO, device or folder there is refused, never silently replaced by a
regular file. New files get the permissions ``open(..., "w")`` would give them (0666 less
the umask), and a replaced file keeps its own, as ``cp`` and ``cjxl`` do.

Errors name the real output path, never the hidden temp file, and are :class:`UsageError`
(exit 2: the output named cannot be written).
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

from liccodec.errors import UsageError


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)  # no other way to read it: set and restore at once
    os.umask(old)
    return old


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def existing_target(path: str | Path) -> os.stat_result | None:
    """``lstat`` of an output target that may be replaced: None if there is nothing there.

    Raises :class:`UsageError` if something other than a regular file is there (``-``
    writes to stdout; a symlink is not followed, its target is not what the rename replaces).
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{path} is {_kind(st.st_mode)}, not a regular file: refusing to replace it "
                         "(write to '-' to stream to stdout, or choose another output)")
    return st


def check_writable(path: str | Path) -> None:
    """Fail now, before any coding, if ``path`` cannot be written (:class:`UsageError`).

    Probes the folder by creating and removing a temp file in it; a folder that does not
    exist yet is checked at its nearest existing ancestor (it will be created).
    """
    path = Path(path)
    existing_target(path)
    folder = path.parent
    if folder.is_dir():
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
        except OSError as e:
            raise UsageError(f"cannot write {path}: {e.strerror}") from None
        os.close(fd)
        os.unlink(tmp)
        return
    ancestor = folder
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"cannot write {path}: {ancestor} is not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write {path}: cannot create folders in {ancestor} (permission denied)")


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(f)`` on a temp file in ``path``'s folder and rename it into place.

    A crash or an exception leaves any existing ``path`` untouched and no partial file.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot write {path}: cannot create {path.parent}: {e.strerror}") from None
    old = existing_target(path)
    mode = stat.S_IMODE(old.st_mode) if old is not None else 0o666 & ~_umask()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):  # POSIX; elsewhere the temp file's own mode stays
                os.fchmod(f.fileno(), mode)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            raise UsageError(f"cannot write {path}: {e.strerror or e}") from None
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))
