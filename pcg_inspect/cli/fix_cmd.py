"""``pcg-inspect fix``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._utils import Debug, JsonOut, Quiet, guarded, stop_message, trace_options, with_trace_options

if TYPE_CHECKING:
    from rich.console import Console

    from ..fix import FixResult


@with_trace_options(after="write", models=False)
def fix_command(
    target: Annotated[str, typer.Argument(metavar="TARGET", help="path/to/file.py:factory (fix edits your files).")],
    write: Annotated[bool, typer.Option("--write", help="Edit the files in place (only if unchanged since the trace; "
                                                      "each file written atomically). Default: show the diff only.")] = False,
    json_out: JsonOut = None,
    quiet: Quiet = False,
    debug: Debug = False,
    **shared: Any,
) -> None:
    """Apply the fixes the report suggests as source edits, then trace the patched code and show before -> after.

    --json writes the final report (the patched copy's; the target's when nothing was edited); -q prints only
    what was fixed, what is left and the verdict.

    Exit codes: 0 the patched target is capturable, 1 problems remain (listed, with why each was not
    fixed automatically), 2 usage or load error, 3 internal error (also: an edit broke the patched copy; it is left
    out, reported, and the other edits kept), 4 timeout.
    """

    def body() -> int:
        import dataclasses

        from ..diff import diff as diff_reports
        from ..errors import EXIT_INTERNAL, EXIT_OK, EXIT_PROBLEMS
        from ..report import exit_code
        from ..fix import run_fix
        from ..render.console import verdict
        from ..render.diffview import render as render_diff
        from rich.text import Text

        from .._io import check_writable, write_atomic
        from ._utils import consoles

        opts = trace_options(target, shared)
        if json_out and json_out != "-":
            check_writable(json_out, "--json")
        out, err = consoles(json_out == "-")
        if err.is_terminal and not quiet:
            with err.status("tracing…") as status:
                result = run_fix(opts, write, progress=lambda msg: status.update(Text(msg)))
        else:
            result = run_fix(opts, write)
        final = result.after or result.before
        if json_out == "-":
            import sys

            sys.stdout.write(final.to_json())
        elif json_out:
            write_atomic(json_out, final.to_json())
        _print(out, result, quiet)
        if result.after is not None and not quiet:
            changes = diff_reports(result.before, result.after)
            out.print(render_diff(dataclasses.replace(changes, a="before", b="after the edits")))
        if result.after is not None and not result.written and not quiet:
            out.print(Text("(the verdict below is the patched copy's: its line numbers are those of the diff's new side)",
                           style="dim"))
        out.print(verdict(final))
        for report in (result.before, result.after):
            stopped = stop_message(report) if report is not None else None
            if stopped is not None:
                err.print(stopped)
                return exit_code(report)
        for what in result.broken:
            err.print(Text.assemble(("internal error: ", "bold red"), f"an edit pcg-inspect planned broke the patched copy, "
                                    f"so it was left out (a bug in pcg-inspect; please report it): {what}"))
        if result.broken:
            return EXIT_INTERNAL
        return EXIT_OK if final.all_capturable else EXIT_PROBLEMS

    raise typer.Exit(guarded(debug, body))


def _print(out: Console, result: FixResult, quiet: bool = False) -> None:
    from rich.text import Text

    from ..text import location

    if result.diff and not quiet:
        for line in result.diff.splitlines():
            style = "green" if line.startswith("+") and not line.startswith("+++") else "red" if line.startswith("-") and not line.startswith("---") else ""
            out.print(Text(line, style=style))
    elif not result.diff:
        out.print(Text("no automatic edit applies"))
    for what in result.fixed:
        out.print(Text.assemble(("✓ ", "green"), what))
    if result.written:
        out.print(Text(f"wrote {', '.join(result.written)}"))
    elif result.diff and not quiet:
        out.print(Text("(not written: rerun with --write to edit the files)", style="dim"))
    for item in result.left:
        where = location(item.file, item.line) if item.file else ""
        out.print(Text.assemble(("✗ left for you: ", "yellow"), item.title, f"  {where}\n      why: {item.why}"))
