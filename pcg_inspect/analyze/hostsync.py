"""Host syncs inside captured pieces: compiled by the engine, fatal at CUDA-graph capture.

Under ``fullgraph=True`` an ``.item()``, ``.tolist()``, ``nonzero``, a boolean-mask index or a
``repeat_interleave`` with tensor repeats does not break the graph: it stays in the captured piece
as an unbacked size, and capturing that piece fails on the host sync. Found three ways:

- in the traced graphs: a node that binds a new unbacked symbol from inputs that carry none (the
  source of a data-dependent size), or a host copy (``.cpu()``, ``.numpy()``);
- inside a custom op's kernel, seen in the eager run, when that op sits in a captured piece;
- in code Dynamo never reached (seen in the eager run only).

A host sync in a split piece (or inside a split op's kernel) is fine under tc_piecewise: split pieces run
eagerly. Under breakable only break points run eagerly (``breakpoints``: ``@eager_on_graph`` functions and break
ops), under full nothing: each finding says which backends it blocks (``HostSyncDetails.eager_under``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

from .. import _torch_compat as compat
from ..causes import CAUSES, host_sync_cause
from ..details import HostSyncDetails
from ..frames import node_user_location, source_line
from ..report import Finding
from ..opnames import op_label, target_key
from .observe import Observation
from .sizes import common_expression, with_keyword

_HOST_COPY_METHODS = ("cpu", "numpy", "tolist", "item")


def host_sync_findings(graphs: Sequence[Any], cut: Any, obs: Optional[Observation], reached: set[tuple[str, int]],
                       breaks: Sequence[Any], split_ops: Sequence[str], roots: Sequence[str],
                       backends: Sequence[str] = ("tc_piecewise",)) -> list[Finding]:
    """host_sync errors, one per (line, cause), in graph order; with ``full`` or ``breakable`` judged, also the syncs
    inside split ops' kernels (eager between tc_piecewise's pieces, captured by full, and by breakable unless the
    op runs inside a break point)."""
    found: dict[tuple, Finding] = {}
    in_break = {s.site for s in obs.syncs if s.in_break} if obs is not None else set()
    captured_ops: dict[str, tuple[int, int, Any]] = {}
    for g in graphs:
        pieces, split = cut.piece_of[g.index], cut.split_pieces[g.index]
        for node in g.gm.graph.nodes:
            piece = pieces.get(node, -1)
            if piece < 0 or piece in split:
                continue
            if node.op == "call_function" and compat.is_op(node.target):
                captured_ops.setdefault(target_key(node.target), (g.index, piece, node))
            cause = node_sync_cause(node)
            if cause:
                site = node_user_location(node, roots)
                f = _finding(op_label(node), cause, "graph", site, g.index, piece, node.name,
                             eager_under=("breakable",) if site in in_break else ())
                found.setdefault((f.file, f.line, cause), f)
    if obs is not None:
        for f in _kernel_syncs(obs, captured_ops, reached, split_ops, roots) + _unreached_syncs(obs, reached, breaks):
            found.setdefault((f.file, f.line, f.details.cause), f)
        for f in _split_op_syncs(obs, split_ops):
            if any(b not in f.details.eager_under for b in backends):
                found.setdefault((f.file, f.line, f.details.cause, "split_op"), f)
    return [_with_output_size(f, obs) if f.details.cause == "repeat_interleave" and obs is not None else f
            for f in found.values()]


def _with_output_size(f: Finding, obs: Observation) -> Finding:
    """A repeat_interleave whose total equalled one shape expression at every traced size: that is the fix."""
    seen = [(s.tokens, s.output_size) for s in obs.syncs if s.site == (f.file, f.line) and s.cause == "repeat_interleave"]
    expr = common_expression(seen)
    if not expr:
        return f
    sizes = ", ".join(str(t) for t in sorted({t for t, _ in seen if t is not None}, reverse=True))
    edited = with_keyword(f.code, "repeat_interleave", f"output_size={expr}")
    return dataclasses.replace(
        f, fix=edited or f"output_size={expr}", details=dataclasses.replace(f.details, output_size=expr),
        hint=f"At every call in the eager run ({sizes} tokens) the repeats added up to {expr}: pass it as output_size= and "
        "the host never reads them. Keep it only if that holds by construction (e.g. every token picks top_k experts): "
        "on the GPU output_size is not checked, so a wrong total gives a wrong result without an error.",
    )


def node_sync_cause(node: Any) -> str:
    """Why this traced node reads device memory on the host ('' when it does not)."""
    if node.op not in ("call_function", "call_method"):
        return ""
    label = op_label(node).lstrip(".")
    if node.op == "call_method" and label in _HOST_COPY_METHODS:
        return host_sync_cause(label)
    if label == "cond" and node.args and compat.is_tensor_value(_value(node.args[0]) if hasattr(node.args[0], "meta") else None):
        return "cond"  # torch.cond on a device predicate: read on the host at every call
    bound = compat.unbacked_bindings(node)
    if not bound or any(compat.has_unbacked(_value(a)) for a in node.all_input_nodes):
        return ""  # no new data-dependent size, or one derived from an earlier sync (reported there)
    cause = host_sync_cause(label.split(".")[-1])
    if cause:
        return cause
    return "scalar" if compat.is_symbolic_scalar(_value(node)) else "dynamic_shape"


def _value(node: Any) -> Any:
    return node.meta.get("example_value", node.meta.get("val"))


def _kernel_syncs(obs: Observation, captured_ops: dict[str, tuple[int, int, Any]], reached: set[tuple[str, int]],
                  split_ops: Sequence[str], roots: Sequence[str]) -> list[Finding]:
    out = []
    for info in obs.ops.values():
        if not info.syncs or info.name in split_ops:
            continue
        where = captured_ops.get(info.name)
        eager_site = info.sites[0] if info.sites else ("", 0)
        if where is None and (not eager_site[0] or eager_site in reached):
            continue  # not in a captured piece (a break, a split piece) and not in unreached code
        site = node_user_location(where[2], roots) if where is not None else eager_site
        sync = info.syncs[0]
        kernel = f" (at {_short(sync.site)})" if sync.site[0] else ""
        out.append(_finding(sync.op, sync.cause, "custom_op", site, where[0] if where else None, where[1] if where else None,
                            where[2].name if where else "", inside=info.name, extra=kernel,
                            eager_under=("breakable",) if info.in_break else ()))
    return out


def _split_op_syncs(obs: Observation, split_ops: Sequence[str]) -> list[Finding]:
    """Host syncs inside split ops' kernels: fine under tc_piecewise (split ops run eagerly) and under breakable when
    the op runs inside a break point; fatal in ``full``'s one graph."""
    out = []
    for info in obs.ops.values():
        if not info.syncs or info.name not in split_ops:
            continue
        sync = info.syncs[0]
        kernel = f" (at {_short(sync.site)})" if sync.site[0] else ""
        site = info.sites[0] if info.sites else ("", 0)
        out.append(_finding(sync.op, sync.cause, "split_op", site, None, None, "", inside=info.name, extra=kernel,
                            eager_under=("tc_piecewise", "breakable") if info.in_break else ("tc_piecewise",)))
    return out


def _unreached_syncs(obs: Observation, reached: set[tuple[str, int]], breaks: Sequence[Any]) -> list[Finding]:
    broken = {(b.file, b.line) for b in breaks}
    out = []
    for seen in obs.syncs:
        if seen.site[0] and seen.site not in reached and seen.site not in broken:
            out.append(_finding(seen.op, seen.cause, "eager", seen.site, None, None, "",
                                eager_under=("breakable",) if seen.in_break else ()))
    return out


def _finding(op: str, cause: str, seen_in: str, site: tuple[str, int], graph: Optional[int], piece: Optional[int],
             node: str, inside: str = "", extra: str = "", eager_under: tuple[str, ...] = ()) -> Finding:
    from ..options import BACKENDS

    file, line = site
    captured_by = [b for b in BACKENDS if b not in eager_under]
    where = {
        "graph": f"inside captured piece {piece}",
        "custom_op": f"inside the kernel of {inside}{extra}, which runs in captured piece {piece}" if piece is not None
        else f"inside the kernel of {inside}{extra}",
        "eager": "in code Dynamo never reached (it stopped earlier in this frame), seen in the eager run",
        "split_op": f"inside the kernel of {inside}{extra}, a split op: capture-safe under {' and '.join(eager_under)}, "
                    f"where it runs eagerly, not under {' or '.join(captured_by)}, which capture{'s' if len(captured_by) == 1 else ''} it",
    }[seen_in]
    if eager_under and seen_in != "split_op":
        where += f" (eager under {', '.join(eager_under)}, where it runs inside a break point)"
    split_why = ("Under full the whole forward is one CUDA graph" + (
        "; under breakable only @eager_on_graph functions (and break ops) run eagerly, and this op is called from none"
        if "breakable" in captured_by else "") + ", and capture fails on the host read")
    return Finding(
        kind="host_sync", severity="error",
        message=f"{op} {where}: it {CAUSES[cause].what}. " + (
            split_why if seen_in == "split_op"
            else "sglang compiles it ("
            + ("no graph break" if cause == "cond" else "fullgraph=True keeps it as an unbacked size, no graph break")
            + ") and CUDA-graph capture of the piece then fails on the host sync"),
        file=file, line=line, code=source_line(file, line), op=inside or op,
        hint=(f"Under breakable, run {inside.replace('.', '::', 1)} inside a break point (call it from an @eager_on_graph "
              "function; BREAK_OPS when the target calls the op directly); under full nothing runs eagerly: compute the "
              "value before forward, or use a static bound with masking."
              if seen_in == "split_op" and "breakable" in captured_by else
              "Under full nothing runs eagerly: compute the value before forward and pass it in, or use a static bound "
              "with masking." if seen_in == "split_op" else CAUSES[cause].hint),
        fix=(f'SPLIT_OPS = ["{inside.replace(".", "::", 1)}"]  # sglang: @register_split_op() on its definition'
             if inside and seen_in != "split_op" else
             f'BREAK_OPS = ["{inside.replace(".", "::", 1)}"]  # sglang: call it from an @eager_on_graph function'
             if inside and "breakable" in captured_by else ""),
        details=HostSyncDetails(op=op, cause=cause, seen_in=seen_in, inside_op=inside, graph=graph, piece=piece, node=node,
                                eager_under=tuple(eager_under)),
    )


def _short(site: tuple[str, int]) -> str:
    from ..text import location

    return location(*site)
