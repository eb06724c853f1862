"""``pcg-inspect trace``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.text import Text

from ._utils import Debug, Detail, JsonOut, Quiet, check_detail, consoles, guarded, stop_message, target_echo, trace_options, with_trace_options



@with_trace_options(after="target")
def trace_command(
    target: Annotated[str, typer.Argument(metavar="TARGET", help="path/to/file.py:factory, package.module:factory, or a model: "
                                          "bundled name (pcg-inspect models), folder with config.json, org/name")],
    json_out: JsonOut = None,
    out: Annotated[Optional[Path], typer.Option("--out", metavar="DIR", help="Folder for report.json, graph.dot, graph.svg, report.html.")] = None,
    html: Annotated[Optional[Path], typer.Option("--html", metavar="PATH", help="Write the self-contained HTML report to PATH.")] = None,
    detail: Detail = "auto",
    quiet: Quiet = False,
    debug: Debug = False,
    **shared: Any,
) -> None:
    """Trace TARGET like piecewise CUDA graph capture and report every graph break, guard, recompile and piece.

    Exit codes: 0 capturable, 1 problems found, 2 usage or load error, 3 internal error, 4 timeout.
    """

    def body() -> int:
        from .. import run as runner
        from ..report import exit_code
        from ..render.console import render, verdict

        opts = trace_options(target, shared)
        check_detail(detail)
        _check_outputs(json_out, out, html)
        view, err = consoles(json_out == "-")
        echo = target_echo(opts.target, err, quiet)
        if quiet or not err.is_terminal:
            report = runner.trace(opts, echo=echo)
        else:
            with err.status("tracing…") as status:
                report = runner.trace(opts, progress=lambda msg: status.update(Text(msg)), echo=echo)
        note = _write_outputs(report, json_out, out, html, detail)
        view.print(verdict(report) if quiet else render(report))
        if note:
            err.print(f"note: {note}", markup=False)
        stopped = stop_message(report)
        if stopped is not None:
            err.print(stopped)
        return exit_code(report)

    raise typer.Exit(guarded(debug, body))


def _check_outputs(json_out: Optional[str], out: Optional[Path], html: Optional[Path]) -> None:
    from .._io import check_writable

    if json_out and json_out != "-":
        check_writable(json_out, "--json")
    if out is not None:
        check_writable(out, "--out", is_dir=True)
    if html is not None:
        check_writable(html, "--html")


def _write_outputs(report: Any, json_out: Optional[str], out: Optional[Path], html: Optional[Path], detail: str) -> str:
    import sys

    from .._io import write_atomic

    text = report.to_json()
    if json_out == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    elif json_out:
        write_atomic(json_out, text)
    if out is None and html is None:
        return ""
    from ..render.artifacts import save

    _, note = save(report, out, html, detail)
    return note
