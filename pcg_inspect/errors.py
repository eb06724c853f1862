"""Exit codes, the one exception family the CLI turns into a one-line message, and the timeout signal."""

from __future__ import annotations

import traceback

EXIT_OK = 0
"""Capturable."""
EXIT_PROBLEMS = 1
"""Problems found: a graph break, an error finding, a failed replayed piece."""
EXIT_USAGE = 2
"""Usage or load error: bad option, missing file, a target that cannot be loaded or that ends the process
(sys.exit, os._exit, a signal: a report with a ``target_exit`` finding is still written)."""
EXIT_INTERNAL = 3
"""A bug in pcg-inspect itself."""
EXIT_TIMEOUT = 4
"""The run hit --timeout (a report with a timeout finding is still written)."""
EXIT_INTERRUPTED = 130


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
    """The target could not be loaded: missing file, bad ``module:attr``, factory raised, bad return, sys.exit."""


class ReportError(PcgInspectError):
    """A report file is missing, malformed, truncated or of an unknown schema."""


class TraceTimeout(BaseException):
    """Raised into the thread running the pipeline when --timeout expires.

    A BaseException, so the target's and Dynamo's ``except Exception`` handlers let it through.
    ``stack`` holds the frames of the interrupted thread when it was raised from another thread.
    """

    def __init__(self, timeout_s: float, stack: "list[traceback.FrameSummary] | None" = None) -> None:
        super().__init__(f"timed out after {timeout_s:g} s")
        self.timeout_s = timeout_s
        self.stack = stack or []

    def settle(self) -> None:
        """Tell the deadline that raised this that it was caught (it raises again until then)."""


class Interrupted(BaseException):
    """Ctrl-C in the command-line tool (raised by its SIGINT handler; not a KeyboardInterrupt, which click and
    the target's code may catch). Children are stopped on the way out; the CLI exits 130."""
