"""The one place that writes files: atomically, so a crash never leaves half a report."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``.

    Args:
        path: destination file; its folder is created if missing.
        data: text (written as UTF-8) or bytes.
    Returns:
        The destination path.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def check_writable(path: str | os.PathLike[str], what: str, is_dir: bool = False) -> None:
    """Fail now, before any work, if ``path`` cannot be written later.

    Creates the folder (as the write would) and writes and removes a probe file in it: permission
    bits, read-only mounts and pseudo file systems all answer the same way a real write would.

    Raises:
        UsageError: one line naming the option and why.
    """
    from .errors import UsageError

    dest = Path(path).expanduser()
    if dest.exists() and dest.is_dir() != is_dir:
        raise UsageError(f"{what} {path}: {'not a directory' if is_dir else 'is a directory'}")
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
