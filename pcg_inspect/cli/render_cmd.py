"""``pcg-inspect render``: redraw pictures and the HTML report from a saved report, without the model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import EXIT_OK
from ._utils import Debug, Detail, check_detail, guarded, make_console


def render_command(
    report_path: Annotated[str, typer.Argument(metavar="REPORT", help="A report JSON written by trace.")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Folder for graph.dot, graph.svg, report.html (default: the report's folder).", metavar="DIR")] = None,
    html: Annotated[Optional[Path], typer.Option("--html", help="Write only the HTML report, to PATH.", metavar="PATH")] = None,
    detail: Detail = "auto",
    debug: Debug = False,
) -> None:
    """Draw the split (Graphviz) and the self-contained HTML report from a report JSON."""

    def body() -> int:
        from .._io import check_writable
        from ..render.artifacts import save
        from ..report import load_report

        check_detail(detail)
        report = load_report(report_path)
        folder = out if out is not None or html is not None else Path(report_path).resolve().parent
        if folder is not None:
            check_writable(folder, "--out", is_dir=True)
        if html is not None:
            check_writable(html, "--html")
        written, note = save(report, folder, html, detail, write_json=False)
        console = make_console(stderr=True)
        for p in written:
            console.print(f"wrote {p}", markup=False)
        if note:
            console.print(f"note: {note}", markup=False)
        return EXIT_OK

    raise typer.Exit(guarded(debug, body))
