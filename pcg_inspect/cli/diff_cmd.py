"""``pcg-inspect diff``."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from ..errors import EXIT_OK, EXIT_PROBLEMS, UsageError
from ._utils import Debug, JsonOut, Quiet, consoles, guarded, make_console, stop_message, trace_options, with_trace_options


@with_trace_options(after="show_all")
def diff_command(
    a: Annotated[str, typer.Argument(metavar="A", help="Before: a report JSON, or a target (file.py:factory, a model) traced on the spot.")],
    b: Annotated[str, typer.Argument(metavar="B", help="After: a report JSON, or a target.")],
    fail_on: Annotated[
        Optional[list[str]],
        typer.Option("--fail-on", metavar="WHAT", help="What counts as a regression: breaks, findings, replay, timing, plan, any (comma-separated or repeated). Default breaks,findings,replay."),
    ] = None,
    time_threshold: Annotated[
        float, typer.Option("--time-threshold", metavar="RATIO", help="Relative slow-down of a piece that counts as a timing change (0.5 = 50%).")
    ] = 0.5,
    fmt: Annotated[str, typer.Option("--format", metavar="FORMAT", help="text, markdown or json.")] = "text",
    show_all: Annotated[bool, typer.Option("--all", help="Also list unchanged items.")] = False,
    json_out: JsonOut = None,
    quiet: Quiet = False,
    debug: Debug = False,
    **shared: Any,
) -> None:
    """Compare two reports (or targets): what was fixed, what was introduced.

    Every trace option applies, whole, to a side given as a target (each traced in its own process).
    With --json -, stdout carries only the JSON; the text or markdown view goes to stderr.

    Exit codes: 0 no regression, 1 regression, 2 usage or load error, 3 internal error, 4 a side timed out.
    """

    def body() -> int:
        import json
        import sys

        from .. import run as runner
        from .._io import check_writable, write_atomic
        from ..diff import diff as diff_reports
        from ..diff import parse_fail_on
        from ..render.diffview import headline, markdown, render
        from ..report import exit_code

        if fmt not in ("text", "markdown", "json"):
            raise UsageError(f"--format must be text, markdown or json, got {fmt!r}")
        if time_threshold <= 0:
            raise UsageError("--time-threshold must be positive")
        fail = parse_fail_on(fail_on or ())
        if json_out and json_out != "-":
            check_writable(json_out, "--json")
        opts = trace_options("", shared)
        side_a, side_b = runner.sides(a, b, opts)
        result = diff_reports(side_a, side_b, fail, time_threshold)
        text = json.dumps(result.to_dict(), indent=2) + "\n"
        json_on_stdout = json_out == "-" or fmt == "json"
        view, _ = consoles(json_on_stdout)
        if json_on_stdout:
            sys.stdout.write(text)
        if json_out and json_out != "-":
            write_atomic(json_out, text)
        if fmt == "markdown":
            (sys.stderr if json_on_stdout else sys.stdout).write(markdown(result))
        elif fmt == "text" and quiet:
            view.print(headline(result), markup=False)
        elif fmt == "text":
            view.print(render(result, show_all))
        stopped = [(m, exit_code(s)) for s in (side_a, side_b) if (m := stop_message(s)) is not None]
        for message, _ in stopped:
            make_console(stderr=True).print(message)
        if stopped:
            return max(code for _, code in stopped)  # a side that did not finish is not a comparison (4 timeout, 2 exit)
        return EXIT_PROBLEMS if result.regressed else EXIT_OK

    raise typer.Exit(guarded(debug, body))
