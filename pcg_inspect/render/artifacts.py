"""Build every picture/page of a report (content only), and save them with the one atomic writer."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..report import Report


@dataclass
class Artifacts:
    dot: Optional[str]
    """None when the graphviz Python package is missing (the HTML keeps its piece overview)."""
    svg: Optional[str]
    html: str
    detail: str
    note: str = ""
    timings_s: dict[str, float] = field(default_factory=dict)


def build(report: Report, detail: str = "auto", dot_name: str = "graph.dot") -> Artifacts:
    """DOT, SVG (when Graphviz is installed) and HTML for a report."""
    from .graph import choose_detail, no_dot_note, to_dot, to_svg
    from .html import render_html

    chosen = choose_detail(report, detail)
    t0 = time.perf_counter()
    try:
        dot: Optional[str] = to_dot(report, chosen)
    except ImportError:  # a declared dependency missing from this environment: draw what needs no Graphviz
        dot = None
    t1 = time.perf_counter()
    svg = to_svg(dot) if dot is not None else None
    t2 = time.perf_counter()
    note = ("" if svg is not None else no_dot_note(dot_name)) if dot is not None else \
        "the graphviz Python package is not installed (pip install graphviz): no graph.dot or graph.svg; the HTML " \
        "report shows the piece overview without the node-by-node graph"
    html = render_html(report, svg, note)
    t3 = time.perf_counter()
    return Artifacts(dot, svg, html, chosen, note, {"dot_s": t1 - t0, "svg_s": t2 - t1, "html_s": t3 - t2})


def save(
    report: Report,
    out_dir: Optional[Path] = None,
    html_path: Optional[Path] = None,
    detail: str = "auto",
    write_json: bool = True,
) -> tuple[list[Path], str]:
    """Write report.json / graph.dot / graph.svg / report.html into ``out_dir`` and/or the HTML to ``html_path``.

    Returns:
        (paths written, note for the user: '' or how to render the .dot without Graphviz).
    """
    from .._io import write_atomic

    art = build(report, detail)
    written: list[Path] = []
    if out_dir is not None:
        if write_json:
            written.append(write_atomic(out_dir / "report.json", report.to_json()))
        if art.dot is not None:
            written.append(write_atomic(out_dir / "graph.dot", art.dot))
        if art.svg is not None:
            written.append(write_atomic(out_dir / "graph.svg", art.svg))
        written.append(write_atomic(out_dir / "report.html", art.html))
    if html_path is not None:
        written.append(write_atomic(html_path, art.html))
    note = art.note.replace("graph.dot", str(out_dir / "graph.dot")) if art.note and out_dir else art.note
    return written, note
