"""The one place that writes files: atomically, so a crash or Ctrl-C never leaves half a report, and only
as a regular file, so a path that names a device, a FIFO or a symlink keeps being one."""

from __future__ import annotations

import os
import signal
import stat
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write ``data`` to ``path``.

    A regular file (or a new one) is written via a temporary file in the same folder and ``os.replace``.
    A symlink is followed: its target is what gets written (the link stays a link). A path that exists and
    is not a regular file (``/dev/null``, a FIFO, a terminal) is written in place, as shell redirection
    does; it is never replaced by a new file. Ctrl-C is held until the write is whole.

    Args:
        path: destination file; its folder is created if missing.
        data: text (written as UTF-8) or bytes.
    Returns:
        The destination path (as given).
    """
    dest = Path(path)
    real = Path(os.path.realpath(dest))
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with _held_interrupts():
        if _is_special(real):
            with open(real, "wb") as fh:
                fh.write(payload)
            return dest
        real.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
            os.replace(tmp, real)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return dest


def _is_special(path: Path) -> bool:
    """An existing node that is not a regular file or a folder: a device, a FIFO, a socket."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


@contextmanager
def _held_interrupts() -> Iterator[None]:
    """Block SIGINT in this (main) thread for the block; a Ctrl-C that came meanwhile is delivered after it."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def check_writable(path: str | os.PathLike[str], what: str, is_dir: bool = False) -> None:
    """Fail now, before any work, if ``path`` cannot be written later.

    Creates the folder (as the write would) and writes and removes a probe file in it: permission
    bits, read-only mounts and pseudo file systems all answer the same way a real write would. A
    symlink is checked at its target; an existing device or FIFO by its own permission (it is
    written in place).

    Raises:
        UsageError: one line naming the option and why.
    """
    from .errors import UsageError

    given = Path(path).expanduser()
    dest = Path(os.path.realpath(given))
    if dest.exists() and dest.is_dir() != is_dir:
        raise UsageError(f"{what} {path}: {'not a directory' if is_dir else 'is a directory'}")
    if not is_dir and _is_special(dest):
        if not os.access(dest, os.W_OK):
            raise UsageError(f"{what} {path}: not writable")
        return
    folder = dest if is_dir else dest.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".pcg-inspect-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
        raise UsageError(f"{what} {path}: cannot write there: {reason}{where}") from None
    if dest.exists() and not is_dir and not os.access(dest, os.W_OK):
        raise UsageError(f"{what} {path}: the file is not writable")
