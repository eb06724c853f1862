"""Shared CLI plumbing: option aliases, the one console, and the error table."""

from __future__ import annotations

import sys
from typing import Annotated, Callable, Optional, TypeVar

import typer
from rich.console import Console

from ..errors import EXIT_INTERNAL, PcgInspectError, one_line

T = TypeVar("T")

Debug = Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the verdict line.")]
Tokens = Annotated[str, typer.Option("--tokens", "-t", help="Capture sizes (token counts), comma-separated.")]
SplitOps = Annotated[
    Optional[list[str]],
    typer.Option("--split-op", help="Op that starts its own eager piece (ns::op, ns.op, ns.op.default). Repeatable."),
]
Device = Annotated[str, typer.Option("--device", help="cpu or cuda.")]
NoReplay = Annotated[bool, typer.Option("--no-replay", help="Skip replaying the pieces against eager.")]
JsonOut = Annotated[
    Optional[str], typer.Option("--json", help="Write the JSON report to PATH ('-' = stdout).", metavar="PATH")
]


def consoles(json_to_stdout: bool) -> tuple[Console, Console]:
    """(view console, error console). With JSON on stdout the view goes to stderr."""
    err = Console(stderr=True, highlight=False, soft_wrap=False)
    out = err if json_to_stdout else Console(highlight=False)
    return out, err


def guarded(debug: bool, fn: Callable[[], T]) -> T:
    """Run a command body: our errors become one line and their exit code, never a traceback.

    Anything else is a bug in pcg-inspect: one line, exit 3 (``--debug`` shows the traceback).
    """
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        return fn()
    except typer.Exit:
        raise
    except PcgInspectError as exc:
        if debug:
            raise
        err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None
    except Exception as exc:
        if debug:
            raise
        err.print(
            f"[bold red]internal error:[/] {one_line(exc)} "
            "(a bug in pcg-inspect; rerun with --debug for the traceback)"
        )
        raise typer.Exit(EXIT_INTERNAL) from None


def argv_command() -> str:
    return " ".join(["pcg-inspect", *sys.argv[1:]])
