"""Graphviz pictures of the split, drawn from the Report alone (so ``render report.json`` redraws).

Built with the ``graphviz`` package, which owns quoting, escaping and calling ``dot``.

Node view: one cluster per piece, split pieces and split-op nodes coloured apart, each node labelled
with its op and output shape, weights hidden. Piece view: one box per piece (node count, op summary,
I/O shapes), automatic above ``AUTO_NODE_LIMIT`` nodes, where ``dot`` on the node view takes seconds.
"""

from __future__ import annotations

import html
import shutil
from collections import Counter
from typing import TYPE_CHECKING, Any, Optional

from ..details import CaptureDetails
from ..text import short_path

if TYPE_CHECKING:
    from ..report import Graph, Piece, Report

AUTO_NODE_LIMIT = 400
CAPTURED, SPLIT, SPLIT_NODE, FAILED, BREAK = "#e8f5e9", "#f3e5f5", "#ab47bc", "#ffcdd2", "#c62828"


def distinct_graphs(report: Report) -> list[tuple[Graph, list[str]]]:
    """Graphs with recompiles of the same code folded: (first graph, all its compile ids)."""
    seen: dict[tuple, tuple[Graph, list[str]]] = {}
    for g in report.graphs:
        key = (g.function, g.file, g.line, g.ops)
        if key in seen:
            seen[key][1].append(g.compile_id)
        else:
            seen[key] = (g, [g.compile_id])
    return list(seen.values())


def choose_detail(report: Report, detail: str, limit: int = AUTO_NODE_LIMIT) -> str:
    """'nodes' or 'pieces' ('auto' picks by the number of nodes drawn)."""
    if detail in ("nodes", "pieces"):
        return detail
    total = sum(g.num_nodes for g, _ in distinct_graphs(report))
    return "nodes" if total <= limit else "pieces"


def _failed_pieces(report: Report) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {}
    if report.replay is not None:
        for s in report.replay.sizes:
            for p in s.pieces:
                if p.status not in ("ok", "skipped"):
                    out.setdefault(s.graph, set()).add(p.index)
    return out


def failing_nodes(report: Report) -> dict[int, set[str]]:
    """Graph index -> names of nodes a capture_failed / replay_mismatch finding points at."""
    out: dict[int, set[str]] = {}
    for f in report.findings:
        d = f.details
        node, graph = getattr(d, "node", ""), getattr(d, "graph", None)
        if isinstance(d, CaptureDetails) and node and graph is not None:
            out.setdefault(graph, set()).add(node)
    return out


def _label(*lines: str) -> Any:
    # User text (code, shapes, '<lambda>') is escaped: no backslash escapes, never an HTML label.
    import graphviz

    return graphviz.nohtml("\\n".join(graphviz.escape(line) for line in lines))


def to_dot(report: Report, detail: str = "auto", show_weights: bool = False) -> str:
    """The DOT text of the split."""
    import graphviz

    mode = choose_detail(report, detail)
    dot = graphviz.Digraph("pcg", graph_attr={"rankdir": "TB", "fontname": "Helvetica", "fontsize": "11", "newrank": "true"},
                           node_attr={"shape": "box", "style": "rounded,filled", "fillcolor": "white", "fontname": "Helvetica",
                                      "fontsize": "9"}, edge_attr={"color": "#777777", "arrowsize": "0.5"})
    failed, bad_nodes = _failed_pieces(report), failing_nodes(report)
    for g, ids in distinct_graphs(report):
        with dot.subgraph(name=f"cluster_g{g.index}") as cluster:
            cluster.attr(label=_label(f"graph {g.index}: {g.function} [{', '.join(ids)}]"), style="dashed", color="#555555")
            pieces = [p for p in report.pieces if p.graph == g.index]
            for p in pieces:
                _piece(cluster, g, p, mode, p.index in failed.get(g.index, set()), bad_nodes.get(g.index, set()), show_weights)
            if mode == "nodes":
                _edges(cluster, g, show_weights)
            else:
                for a, b in zip(pieces, pieces[1:]):
                    cluster.edge(f"g{g.index}_p{a.index}", f"g{g.index}_p{b.index}")
    _breaks(dot, report, mode)
    return dot.source


def _piece(parent: Any, g: Graph, p: Piece, mode: str, bad: bool, bad_nodes: set[str], show_weights: bool) -> None:
    fill = FAILED if bad else (SPLIT if p.is_split else CAPTURED)
    title = f"piece {p.index}: {'split (eager)' if p.is_split else 'captured'}" + (" — REPLAY FAILED" if bad else "")
    if mode == "pieces":
        ops = ", ".join(f"{op}×{n}" if n > 1 else op for op, n in Counter(p.ops).most_common(4))
        parent.node(f"g{g.index}_p{p.index}", _label(title, f"{p.num_nodes} nodes: {ops}", f"in: {', '.join(p.input_shapes[:3])}",
                                                      f"out: {', '.join(p.output_shapes[:3])}"), fillcolor=fill)
        return
    with parent.subgraph(name=f"cluster_g{g.index}_p{p.index}") as c:
        c.attr(label=_label(title), style="filled", fillcolor=fill, color="#999999")
        for n in g.nodes:
            if n.piece != p.index or (n.is_weight and not show_weights):
                continue
            attrs = {"fillcolor": SPLIT_NODE, "fontcolor": "white"} if p.is_split and n.op == "call_function" else {}
            if n.name in bad_nodes:
                attrs = {"fillcolor": BREAK, "fontcolor": "white", "penwidth": "2"}
            c.node(f"g{g.index}_{n.name}", _label(n.target, *([n.shape] if n.shape else [])), **attrs)


def _edges(parent: Any, g: Graph, show_weights: bool) -> None:
    visible = {n.name for n in g.nodes if not (n.is_weight and not show_weights)}
    for n in g.nodes:
        if n.op == "placeholder" and n.name in visible:
            parent.node(f"g{g.index}_{n.name}", _label("input " + n.shape), shape="ellipse", fillcolor="#eeeeee")
        if n.op == "output":
            parent.node(f"g{g.index}_{n.name}", "output", shape="ellipse", fillcolor="#eeeeee")
    for n in g.nodes:
        if n.name in visible:
            for src in n.inputs:
                if src in visible:
                    parent.edge(f"g{g.index}_{src}", f"g{g.index}_{n.name}")


def _breaks(dot: Any, report: Report, mode: str) -> None:
    # Graph breaks: each one is a boundary between compiled graphs.
    for i, b in enumerate(report.graph_breaks, 1):
        dot.node(f"break{i}", _label(f"graph break {i}: {b.category}", f"{short_path(b.file)}:{b.line}", b.code[:60]),
                 shape="octagon", fillcolor="#ffebee", color=BREAK, fontcolor=BREAK)
    if mode != "pieces":
        return
    anchors = []
    for g, _ in distinct_graphs(report):
        last = [p for p in report.pieces if p.graph == g.index]
        anchors.append(f"g{g.index}_p{last[-1].index}" if last else None)
    for i in range(1, len(report.graph_breaks) + 1):
        if i - 1 < len(anchors) and anchors[i - 1]:
            dot.edge(anchors[i - 1], f"break{i}", style="dashed", color=BREAK)


def to_svg(dot_text: str, timeout_s: float = 60.0) -> Optional[str]:
    """SVG from Graphviz ``dot`` through the graphviz package (None when dot is not installed or fails)."""
    import graphviz

    if shutil.which("dot") is None:
        return None
    try:
        svg = graphviz.pipe_string("dot", "svg", dot_text, encoding="utf-8", quiet=True)
    except (graphviz.ExecutableNotFound, graphviz.CalledProcessError, OSError, ValueError):
        return None
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


def no_dot_note(dot_path: str) -> str:
    return (
        f"Graphviz `dot` is not installed: wrote {dot_path} only. Render it with `dot -Tsvg {dot_path} -o graph.svg` "
        "(Debian/Ubuntu: apt-get install graphviz)."
    )


def escape(text: str) -> str:
    return html.escape(text, quote=True)
