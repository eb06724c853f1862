"""Graphviz pictures of the split, drawn from the Report alone (so ``render report.json`` redraws).

Node view: one cluster per piece, split pieces and split-op nodes coloured apart, each node labelled
with its op and output shape, weights hidden. Piece view: one box per piece (node count, op summary,
I/O shapes), automatic above ``AUTO_NODE_LIMIT`` nodes, where ``dot`` on the node view takes seconds.
"""

from __future__ import annotations

import html
import shutil
import subprocess
from collections import Counter
from typing import Optional

from ..report import Graph, Report
from .paths import short_path

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


def _q(text: str) -> str:
    # Labels use DOT's "\\n" line breaks on purpose, so only quotes are escaped.
    return '"' + text.replace('"', '\\"') + '"'


def to_dot(report: Report, detail: str = "auto", show_weights: bool = False) -> str:
    """The DOT text of the split."""
    mode = choose_detail(report, detail)
    failed = _failed_pieces(report)
    lines = [
        "digraph pcg {",
        '  graph [rankdir=TB, fontname="Helvetica", fontsize=11, newrank=true];',
        '  node [shape=box, style="rounded,filled", fillcolor=white, fontname="Helvetica", fontsize=9];',
        '  edge [color="#777777", arrowsize=0.5];',
    ]
    graphs = distinct_graphs(report)
    for g, ids in graphs:
        pieces = [p for p in report.pieces if p.graph == g.index]
        glabel = f"graph {g.index}: {g.function} [" + ", ".join(ids) + "]"
        lines.append(f"  subgraph cluster_g{g.index} {{")
        lines.append(f"    label={_q(glabel)}; style=dashed; color=\"#555555\";")
        for p in pieces:
            bad = p.index in failed.get(g.index, set())
            fill = FAILED if bad else (SPLIT if p.is_split else CAPTURED)
            kind = "split (eager)" if p.is_split else "captured"
            title = f"piece {p.index}: {kind}" + (" — REPLAY FAILED" if bad else "")
            if mode == "pieces":
                ops = ", ".join(f"{op}×{n}" if n > 1 else op for op, n in Counter(p.ops).most_common(4))
                label = f"{title}\\n{p.num_nodes} nodes: {ops}\\nin: {', '.join(p.input_shapes[:3])}\\nout: {', '.join(p.output_shapes[:3])}"
                lines.append(f"    g{g.index}_p{p.index} [label={_q(label)}, fillcolor={_q(fill)}];")
            else:
                lines.append(f"    subgraph cluster_g{g.index}_p{p.index} {{")
                lines.append(f"      label={_q(title)}; style=filled; fillcolor={_q(fill)}; color=\"#999999\";")
                for n in g.nodes:
                    if n.piece != p.index or (n.is_weight and not show_weights):
                        continue
                    is_split_node = p.is_split and n.op == "call_function"
                    style = f', fillcolor="{SPLIT_NODE}", fontcolor=white' if is_split_node else ""
                    nlabel = n.target + ("\\n" + n.shape if n.shape else "")
                    lines.append(f"      g{g.index}_{n.name} [label={_q(nlabel)}{style}];")
                lines.append("    }")
        if mode == "nodes":
            visible = {n.name for n in g.nodes if not (n.is_weight and not show_weights)}
            for n in g.nodes:
                if n.op == "placeholder" and n.name in visible:
                    lines.append(f"    g{g.index}_{n.name} [label={_q('input ' + n.shape)}, shape=ellipse, fillcolor=\"#eeeeee\"];")
                if n.op == "output":
                    lines.append(f"    g{g.index}_{n.name} [label=\"output\", shape=ellipse, fillcolor=\"#eeeeee\"];")
            for n in g.nodes:
                if n.name not in visible:
                    continue
                for src in n.inputs:
                    if src in visible:
                        lines.append(f"    g{g.index}_{src} -> g{g.index}_{n.name};")
        else:
            for a, b in zip(pieces, pieces[1:]):
                lines.append(f"    g{g.index}_p{a.index} -> g{g.index}_p{b.index};")
        lines.append("  }")
    # Graph breaks: each one is a boundary between compiled graphs.
    for i, b in enumerate(report.graph_breaks, 1):
        label = f"graph break {i}: {b.category}\\n{short_path(b.file)}:{b.line}\\n{b.code[:60]}"
        lines.append(f"  break{i} [label={_q(label)}, shape=octagon, fillcolor=\"#ffebee\", color={_q(BREAK)}, fontcolor={_q(BREAK)}];")
    anchors = [f"g{g.index}_p{[p for p in report.pieces if p.graph == g.index][-1].index}" if mode == "pieces" and any(p.graph == g.index for p in report.pieces) else None for g, _ in graphs]
    if report.graph_breaks and mode == "pieces":
        for i in range(1, len(report.graph_breaks) + 1):
            if i - 1 < len(anchors) and anchors[i - 1]:
                lines.append(f"  {anchors[i - 1]} -> break{i} [style=dashed, color={_q(BREAK)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def dot_available() -> bool:
    return shutil.which("dot") is not None


def to_svg(dot_text: str, timeout_s: float = 60.0) -> Optional[str]:
    """SVG from Graphviz ``dot`` (None when dot is not installed or fails)."""
    exe = shutil.which("dot")
    if exe is None:
        return None
    try:
        proc = subprocess.run([exe, "-Tsvg"], input=dot_text, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    svg = proc.stdout
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


def no_dot_note(dot_path: str) -> str:
    return (
        f"Graphviz `dot` is not installed: wrote {dot_path} only. Render it with `dot -Tsvg {dot_path} -o graph.svg` "
        "(Debian/Ubuntu: apt-get install graphviz)."
    )


def escape(text: str) -> str:
    return html.escape(text, quote=True)
