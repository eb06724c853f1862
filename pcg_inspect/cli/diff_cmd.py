"""``pcg-inspect diff``."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..errors import EXIT_OK, EXIT_PROBLEMS, UsageError
from ._utils import Debug, Device, JsonOut, NoReplay, SplitOps, Tokens, argv_command, consoles, guarded


def diff(
    a: Annotated[str, typer.Argument(help="Before: a report JSON, or a target (file.py:factory) traced on the spot.")],
    b: Annotated[str, typer.Argument(help="After: a report JSON, or a target.")],
    fail_on: Annotated[
        Optional[list[str]],
        typer.Option("--fail-on", help="What counts as a regression: breaks, findings, replay, timing, any (comma-separated or repeated). Default breaks,findings,replay."),
    ] = None,
    time_threshold: Annotated[
        float, typer.Option("--time-threshold", help="Relative slow-down of a piece that counts as a timing change (0.5 = 50%).")
    ] = 0.5,
    fmt: Annotated[str, typer.Option("--format", help="text, markdown or json.")] = "text",
    show_all: Annotated[bool, typer.Option("--all", help="Also list unchanged items.")] = False,
    tokens: Tokens = "1,8,64",
    split_op: SplitOps = None,
    device: Device = "cpu",
    no_replay: NoReplay = False,
    json_out: JsonOut = None,
    debug: Debug = False,
) -> None:
    """Compare two reports (or targets): what was fixed, what was introduced.

    The trace options (--tokens, --split-op, --device, --no-replay) apply to a side given as a target.

    Exit codes: 0 no regression, 1 regression, 2 usage or load error, 3 internal error.
    """

    def body() -> int:
        from ..diff import diff as diff_reports
        from ..diff import load_side, parse_fail_on
        from ..load import parse_capture_sizes
        from ..pipeline import TraceOptions

        if fmt not in ("text", "markdown", "json"):
            raise UsageError(f"--format must be text, markdown or json, got {fmt!r}")
        if time_threshold <= 0:
            raise UsageError("--time-threshold must be positive")
        fail = parse_fail_on(fail_on or ())
        opts = TraceOptions(
            target="",
            capture_sizes=parse_capture_sizes(tokens),
            split_ops=tuple(split_op or ()),
            device=device,
            replay=not no_replay,
            command=argv_command(),
        )
        view, _ = consoles(fmt == "json" or json_out == "-")
        ra = load_side(a, opts)
        rb = load_side(b, opts)
        result = diff_reports(ra, rb, fail, time_threshold)
        import json
        import sys

        from .._io import write_atomic

        text = json.dumps(result.to_dict(), indent=2) + "\n"
        if json_out == "-" or fmt == "json":
            sys.stdout.write(text)
        if json_out and json_out != "-":
            write_atomic(json_out, text)
        if fmt == "markdown":
            from ..render.diffview import markdown

            sys.stdout.write(markdown(result))
        elif fmt == "text":
            from ..render.diffview import render

            view.print(render(result, show_all))
        return EXIT_PROBLEMS if result.regressed else EXIT_OK

    raise typer.Exit(guarded(debug, body))
