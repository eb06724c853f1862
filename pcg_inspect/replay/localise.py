"""From "piece 2 failed" to "this op at this line, because": findings for a failed or differing piece."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from ..causes import CAUSES, capture_error_cause, mismatch_cause
from ..details import CaptureDetails
from ..frames import is_user_file, node_user_location, source_line
from ..report import Finding


@dataclass
class Failure:
    """Where and how a piece failed."""

    error: str
    """The primary error: the first one raised inside capture or replay."""
    phase: str
    """warmup (eager, default stream) | capture (capture stream, warm-up or capture) | replay."""
    node: Any = None
    """The FX node it was raised at (None: raised at capture end / on a later sync)."""
    node_index: int = -1
    sticky: bool = False
    """The CUDA context is unusable afterwards (only a fresh process can go on)."""
    searched: tuple[int, int] = (0, 0)
    """For a bisection that had to stop: the prefix range still to search."""
    syncs_inside: bool = False
    """The op at the node is a custom op whose kernel was seen syncing in the eager run."""
    frames: tuple[tuple[str, int], ...] = ()
    """(file, line) of the primary error's traceback, outermost first (where inside a kernel it was raised)."""


@dataclass
class Mismatch:
    """The first node whose replayed value differs from eager."""

    node: Any
    max_abs_err: float
    cause: str = "unknown"


@dataclass
class PieceFacts:
    """What localisation learned about one piece at one size."""

    capture_size: int
    graph: int
    piece: int
    failure: Optional[Failure] = None
    mismatch: Optional[Mismatch] = None
    extra: dict[str, Any] = field(default_factory=dict)


def op_name(node: Any) -> str:
    """The op a node runs, as the report shows it."""
    from ..opnames import op_label

    return op_label(node) if node is not None else ""


def is_custom_op(node: Any) -> bool:
    """A call of a registered op outside aten/prims (its kernel is opaque to Dynamo)."""
    from .. import _torch_compat as compat

    if node is None or node.op != "call_function" or not compat.is_op(node.target):
        return False
    return str(node.target).split(".")[0] not in ("aten", "prims", "prim")


def capture_finding(facts: PieceFacts, roots: Sequence[str], function: str = "") -> Finding:
    """A capture_failed error at the failing node's user line, with the primary error and a fix by cause.

    A piece that already fails in its eager warm-up raised as tc_piecewise runs it (the compiled piece, run before
    capture): a ``capture_failed`` in phase ``warmup`` that blocks tc_piecewise alone — when the forward itself
    fails eagerly, the eager observation reports that as the target's error.
    """
    f = facts.failure
    assert f is not None
    op = op_name(f.node)
    if f.phase == "warmup":
        file, line = node_user_location(f.node, roots) if f.node is not None else ("", 0)
        return Finding(kind="capture_failed", severity="error", op=op, file=file, line=line, code=source_line(file, line),
                       message=f"piece {facts.piece}{_of(function)} raised in the eager warm-up of the compiled piece at "
                               f"{facts.capture_size} tokens" + (f" at {op}" if op else "") + f": {f.error} "
                               "(tc_piecewise runs the compiled piece; breakable and full run the forward itself)",
                       hint="The compiled piece fails before capture: check what Dynamo traced at this line (streams, "
                            "events and other host objects traced into the graph), or keep it out of the compiled forward.",
                       details=CaptureDetails(capture_size=facts.capture_size, graph=facts.graph, piece=facts.piece,
                                              node=f.node.name if f.node is not None else "", target=op,
                                              primary_error=f.error, cause="unknown", phase="warmup"))
    cause = capture_error_cause(f.error, op, f.syncs_inside, tuple(fr for fr, _ in f.frames))
    file, line = node_user_location(f.node, roots) if f.node is not None else ("", 0)
    # the line that calls the compiled helper inside the op's kernel (a compiled function's own frame shows its def)
    inner = [fr for fr in f.frames if is_user_file(fr[0], roots) and not source_line(*fr).startswith(("def ", "async def "))]
    if cause == "nested_capture" and inner:
        file, line = inner[-1]
    where = f"at {op}" if op else "(no single op: the error surfaced when capture ended)"
    phase = {"warmup": "eager warm-up", "capture": "CUDA-graph capture", "replay": "graph replay"}.get(f.phase, f.phase)
    return Finding(
        kind="capture_failed", severity="error",
        message=f"piece {facts.piece}{_of(function)} failed {phase} at {facts.capture_size} tokens {where}: "
                f"it {CAUSES[cause].what} — {f.error}",
        file=file, line=line, code=source_line(file, line), op=op, hint=CAUSES[cause].hint,
        details=CaptureDetails(capture_size=facts.capture_size, graph=facts.graph, piece=facts.piece,
                               node=f.node.name if f.node is not None else "", node_index=f.node_index, target=op,
                               primary_error=f.error, cause=cause, phase=f.phase,
                               searched=f.searched if f.node is None and f.searched[1] - f.searched[0] > 1 else ()),
    )


def mismatch_finding(facts: PieceFacts, roots: Sequence[str], function: str = "") -> Finding:
    """A replay_mismatch error at the first differing node's user line, with the likely cause."""
    m = facts.mismatch
    assert m is not None
    op = op_name(m.node)
    file, line = node_user_location(m.node, roots)
    return Finding(
        kind="replay_mismatch", severity="error",
        message=f"piece {facts.piece}{_of(function)} differs from eager after replay at {facts.capture_size} tokens, first at "
                f"{op} (max abs err {m.max_abs_err:.3g}): it {CAUSES[m.cause].what}",
        file=file, line=line, code=source_line(file, line), op=op, hint=CAUSES[m.cause].hint,
        details=CaptureDetails(capture_size=facts.capture_size, graph=facts.graph, piece=facts.piece, node=m.node.name,
                               node_index=_index(m.node), target=op, cause=m.cause, phase="replay", max_abs_err=m.max_abs_err),
    )


def classify_mismatch(node: Any) -> str:
    """The likely cause of a differing node, from what it is and what it reads."""
    reads_host = any(_on_host(a) for a in node.all_input_nodes) and "copy" in str(node.target) or "_to_copy" in str(node.target)
    reads_empty = any("empty" in str(a.target) for a in node.all_input_nodes if a.op != "placeholder")
    return mismatch_cause(op_name(node), reads_host, reads_empty, is_custom_op(node))


def _on_host(node: Any) -> bool:
    val = node.meta.get("example_value", node.meta.get("val"))
    return getattr(getattr(val, "device", None), "type", "") == "cpu"


def _index(node: Any) -> int:
    from .common import call_nodes

    graph_module = node.graph.owning_module
    return next((i for i, n in enumerate(call_nodes(graph_module)) if n is node), -1) if graph_module is not None else -1


def _of(function: str) -> str:
    return f" of {function}" if function else ""
