"""Stage 4, split: cut each captured FX graph at the split ops, as sglang's ``split_graph`` does.

The node-to-piece rule is the engine's: walk the nodes in order, a ``call_function`` node whose
``str(node.target)`` names a split op gets a piece of its own, with a new piece before and after
it; everything else joins the current piece. Then ``split_module(..., keep_original_order=True)``.
Split ops come from the user, the target's ``SPLIT_OPS`` and sglang's registry (``resolve_split_ops``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from . import _torch_compat as compat
from .details import SplitOutputDetails
from .errors import UsageError
from .frames import clean_function, node_user_location, source_line
from .opnames import normalise_op_name, op_label, target_key
from .report import Finding, Graph, Node, Piece


@dataclass(frozen=True)
class SplitItem:
    """One submodule of the split graph (live)."""

    submod_name: str
    graph_id: int
    is_split: bool
    module: Any


@dataclass(frozen=True)
class SplitResult:
    """The split stage's records, plus each graph's live node -> piece map for later analysis."""

    graphs: tuple[Graph, ...]
    pieces: tuple[Piece, ...]
    findings: tuple[Finding, ...]
    """split_output_address findings."""
    piece_of: dict[int, dict[Any, int]]
    """Graph index -> {live FX node: piece id} (placeholders and output excluded)."""
    split_pieces: dict[int, frozenset[int]]
    """Graph index -> ids of its split (eager) pieces."""


def is_split_node(node: Any, ops: frozenset[str]) -> bool:
    """sglang's test, with both spellings of an op accepted."""
    return node.op == "call_function" and target_key(node.target) in ops


def assign_pieces(gm: Any, ops: Iterable[str]) -> dict[Any, int]:
    """Map every non-placeholder, non-output node to its piece id (sglang's rule)."""
    keys = frozenset(ops)
    piece = 0
    out: dict[Any, int] = {}
    for node in gm.graph.nodes:
        if node.op in ("output", "placeholder"):
            continue
        if is_split_node(node, keys):
            piece += 1
            out[node] = piece
            piece += 1
        else:
            out[node] = piece
    return out


def split_graph(gm: Any, ops: Sequence[str]) -> tuple[Any, list[SplitItem]]:
    """Split ``gm`` at ``ops`` (canonical names) into submodules, in graph order.

    Returns:
        (split GraphModule, items sorted by piece id).
    """
    from torch.fx.passes.split_module import split_module

    mapping = assign_pieces(gm, ops)
    split_ids = {mapping[n] for n in mapping if is_split_node(n, frozenset(ops))}
    # keep_original_order: otherwise split_module may reorder nodes, and a mutation (a cache
    # store, an in-place all-reduce) could move past its readers, changing the result.
    split_gm = split_module(gm, None, lambda n: mapping[n], keep_original_order=True)
    items = []
    for name, module in split_gm.named_children():
        if not name.startswith("submod_"):
            continue
        gid = int(name[len("submod_"):])
        items.append(SplitItem(name, gid, gid in split_ids, module))
    items.sort(key=lambda it: it.graph_id)
    return split_gm, items


def split(captured: Sequence[Any], ops: Sequence[str], roots: Sequence[str]) -> SplitResult:
    """Cut every captured graph at ``ops`` (canonical names) into piece and node records.

    Args:
        captured: ``trace.CapturedGraph`` records (live graphs).
        ops: canonical split-op names from ``resolve_split_ops``.
        roots: folders whose files are the user's (for finding locations).
    Returns:
        SplitResult.
    """
    graphs, pieces, piece_of, split_pieces = [], [], {}, {}
    findings: dict[tuple, Finding] = {}
    keys = frozenset(ops)
    for g in captured:
        mapping = assign_pieces(g.gm, keys)
        ps, nodes = describe(g.gm, g.index, keys, mapping)
        pieces.extend(ps)
        graphs.append(graph_record(g, nodes))
        piece_of[g.index] = mapping
        split_pieces[g.index] = frozenset(p.index for p in ps if p.is_split)
        for node, reader in fresh_split_outputs(g.gm, keys, mapping):
            f = _split_output_finding(node, reader, roots)
            findings.setdefault((f.op, f.file, f.line), f)
    return SplitResult(tuple(graphs), tuple(pieces), tuple(findings.values()), piece_of, split_pieces)


def describe(gm: Any, graph_index: int, keys: frozenset[str], mapping: dict[Any, int]) -> tuple[tuple[Piece, ...], tuple[Node, ...]]:
    """Piece and node records for one captured graph (JSON-safe, from the original graph)."""
    weights = _weight_nodes(gm)
    nodes = []
    members: dict[int, list[Any]] = {}
    for node in gm.graph.nodes:
        pid = mapping.get(node, -1)
        if pid >= 0:
            members.setdefault(pid, []).append(node)
        nodes.append(Node(name=node.name, op=node.op, target=op_label(node), shape=shape_of(node),
                          inputs=tuple(a.name for a in node.all_input_nodes), piece=pid, is_weight=node in weights))
    pieces = []
    for pid in sorted(members):
        ns = members[pid]
        inside = set(ns)
        inputs = _unique(a for n in ns for a in n.all_input_nodes if a not in inside and a not in weights)
        outputs = [n for n in ns if any(u not in inside for u in n.users)]
        calls = [n for n in ns if n.op != "get_attr"]
        pieces.append(Piece(
            graph=graph_index, index=pid, is_split=any(is_split_node(n, keys) for n in ns), num_nodes=len(calls),
            ops=tuple(op_label(n) for n in calls), input_shapes=tuple(shape_of(a) for a in inputs),
            output_shapes=tuple(shape_of(n) for n in outputs), structure=structure(calls, inputs, outputs, weights),
        ))
    return tuple(pieces), tuple(nodes)


def structure(calls: Sequence[Any], inputs: Sequence[Any], outputs: Sequence[Any], weights: set) -> str:
    """A digest of a piece's code that names nothing layer-specific: each node as its op, its arguments (another
    node by position, a piece input by position, a weight by shape, a constant by value), its shape; then which
    nodes leave the piece. Two layers' identical pieces get the same digest."""
    import hashlib

    where = {n: f"n{i}" for i, n in enumerate(calls)}
    where.update({n: f"in{i}" for i, n in enumerate(inputs)})

    def arg(a: Any) -> str:
        if hasattr(a, "op") and hasattr(a, "users"):  # an fx Node
            if a in where:
                return where[a]
            return f"w{shape_of(a)}" if a in weights else f"?{shape_of(a)}"
        if isinstance(a, (list, tuple)):
            return "[" + ",".join(arg(x) for x in a) + "]"
        if isinstance(a, dict):
            return "{" + ",".join(f"{k}={arg(v)}" for k, v in a.items()) + "}"
        return repr(a)

    text = ";".join(f"{op_label(n)}({arg(n.args)},{arg(n.kwargs)}):{shape_of(n)}" for n in calls)
    text += "|" + ",".join(where[n] for n in outputs if n in where)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def graph_record(g: Any, nodes: tuple[Node, ...]) -> Graph:
    """The report record of one captured graph."""
    code = g.code
    calls = [n for n in g.gm.graph.nodes if n.op not in ("placeholder", "output", "get_attr")]
    weights = {n.name for n in nodes if n.is_weight}
    inputs = [n for n in g.gm.graph.nodes if n.op == "placeholder" and n.name not in weights]
    return Graph(
        index=g.index, compile_id=g.compile_id, function=clean_function(code.co_name) if code else "",
        file=code.co_filename if code else "", line=code.co_firstlineno if code else 0, num_nodes=len(calls),
        ops=tuple(op_label(n) for n in calls), capture_sizes=tuple(sorted(g.capture_sizes)),
        input_shapes=tuple(s for s in (shape_of(n) for n in inputs) if s), nodes=nodes,
    )


def _split_output_finding(node: Any, reader_piece: int, roots: Sequence[str]) -> Finding:
    file, line = node_user_location(node, roots)
    op = target_key(node.target)
    return Finding(
        kind="split_output_address",
        severity="warning",
        message=(
            f"split op {op} returns a new tensor that captured piece {reader_piece} reads: the CUDA graph reads it at the "
            "address seen during capture, which the eager allocator may hand to another tensor at replay"
        ),
        file=file, line=line, code=source_line(file, line), op=op,
        hint="Allocate the result in the captured piece before the split op and let the op write into it "
        "(declare it in mutates_args), as vLLM's unified_attention_with_output does.",
        details=SplitOutputDetails(reader_piece=reader_piece),
    )


def resolve_split_ops(names: Sequence[str], target_ops: Sequence[str], use_sglang: bool) -> tuple[list[str], str, list[str]]:
    """Canonical split-op names from the user (``names``), the target's ``SPLIT_OPS`` and sglang's registry.

    Returns:
        (ops, sglang version or '', warnings).
    Raises:
        UsageError: a name the user or target gave is malformed or names no registered op.
    """
    warnings: list[str] = []
    sglang_ops, sglang_version = sglang_split_ops() if use_sglang else ([], "")
    out: list[str] = []
    for name in [*names, *target_ops, *sglang_ops]:
        canon = normalise_op_name(name)
        if compat.resolve_op(canon) is None:
            if name not in sglang_ops:
                raise UsageError(f"unknown split op {name!r}: no op {canon.replace('.', '::', 1)} is registered after loading the target")
            warnings.append(f"sglang split op {name} is not registered in this process; skipped")
            continue
        if canon not in out:
            out.append(canon)
    return out, sglang_version, warnings


def sglang_split_ops() -> tuple[list[str], str]:
    """sglang's registered split ops and its version (([], '') when sglang is not loaded).

    sglang's SPLIT_OPS is filled by @register_split_op() when sglang's layer modules are imported:
    if the target did not import sglang the registry is empty, and importing sglang just to read it
    costs 2-4 s, so it is read only when sglang is already loaded.
    """
    if "sglang" not in sys.modules:
        return [], ""
    try:
        from sglang.srt.compilation.compilation_config import SPLIT_OPS  # type: ignore[import-not-found]
    except Exception:
        return [], ""
    try:
        from importlib.metadata import version

        ver = version("sglang")
    except Exception:
        ver = "unknown"
    return list(SPLIT_OPS), ver


def shape_of(node: Any) -> str:
    """'[s0, 64] f32' for tensor-valued nodes, '(…)' for tuples, '' otherwise."""
    val = node.meta.get("example_value", node.meta.get("val"))
    return _fmt_value(val)


_DTYPES = {
    "torch.float32": "f32",
    "torch.float16": "f16",
    "torch.bfloat16": "bf16",
    "torch.float64": "f64",
    "torch.int64": "i64",
    "torch.int32": "i32",
    "torch.bool": "bool",
    "torch.int8": "i8",
    "torch.uint8": "u8",
}


def _fmt_value(val: Any) -> str:
    if val is None:
        return ""
    if isinstance(val, (int, float)) or type(val).__name__ in ("SymInt", "SymFloat"):
        return f"{val} int" if not isinstance(val, float) and type(val).__name__ != "SymFloat" else f"{val} float"
    if isinstance(val, (list, tuple)):
        inner = [_fmt_value(v) for v in val]
        return "(" + ", ".join(i or "-" for i in inner) + ")"
    shape = getattr(val, "shape", None)
    dtype = getattr(val, "dtype", None)
    if shape is None or dtype is None:
        return ""
    dims = ", ".join(str(d) for d in shape)
    return f"[{dims}] {_DTYPES.get(str(dtype), str(dtype).replace('torch.', ''))}"


def _weight_nodes(gm: Any) -> set[Any]:
    out = set()
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            out.add(node)
        elif node.op == "placeholder" and compat.is_param_placeholder(node):
            out.add(node)
    return out


def _unique(nodes: Iterable[Any]) -> list[Any]:
    seen: dict[Any, None] = {}
    for n in nodes:
        seen.setdefault(n, None)
    return list(seen)


def fresh_split_outputs(gm: Any, keys: frozenset[str], mapping: dict[Any, int]) -> list[tuple[Any, int]]:
    """Split nodes whose returned tensor is read by a later captured piece, with that piece's id.

    Captured graphs read their inputs at the addresses seen during capture (sglang does not copy
    them; its debug mode asserts they are unchanged). A split op that returns a new tensor hands
    the next graph memory the eager allocator may give to someone else at replay.
    """
    split_pieces = {mapping[n] for n in mapping if is_split_node(n, keys)}
    out = []
    for node in gm.graph.nodes:
        if not is_split_node(node, keys) or not shape_of(node):
            continue
        readers = list(node.users)
        for u in list(readers):  # look through getitem on tuple results
            if u.op == "call_function" and getattr(u.target, "__name__", "") == "getitem":
                readers.extend(u.users)
        later = sorted({mapping[u] for u in readers if u in mapping and mapping[u] not in split_pieces})
        if later:
            out.append((node, later[0]))
    return out
