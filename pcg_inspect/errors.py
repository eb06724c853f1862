"""The one exception family the CLI turns into a one-line message and an exit code."""

from __future__ import annotations

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3


def one_line(exc: BaseException, limit: int = 300) -> str:
    """'TypeName: first line of the message' — how every error is shown in one line."""
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0][:limit]}" if msg else type(exc).__name__


class PcgInspectError(Exception):
    """Base of every error the tool reports as one line. ``exit_code`` is what the CLI exits with."""

    exit_code = EXIT_USAGE


class UsageError(PcgInspectError):
    """Bad command-line input: an unknown option value, CUDA asked for without a GPU."""


class TargetError(PcgInspectError):
    """The target could not be loaded: missing file, bad ``module:attr``, factory raised, bad return."""


class ReportError(PcgInspectError):
    """A report file is missing, malformed, truncated or of an unknown schema."""


class InternalError(PcgInspectError):
    """A bug in pcg-inspect itself; ``--debug`` shows the traceback."""

    exit_code = EXIT_INTERNAL
