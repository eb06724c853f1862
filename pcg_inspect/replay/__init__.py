"""Stage 5, replay: run the pieces PCG would capture and compare them with eager.

CPU (``mode='cpu'``): each piece re-run on its recorded inputs and the whole split module on fresh
inputs against the unsplit graph; no CUDA graph is captured (``cpu.py``).

GPU (``mode='cuda-graph'``): capture as sglang's piecewise backend does, replay with fresh inputs
against an fp64 eager reference (``cuda.py``). A piece that fails capture or replay is pinned to
its op and line, a piece that differs to the first node that differs (``localise.py``), as
``capture_failed`` / ``replay_mismatch`` findings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from ..errors import one_line
from ..report import Finding, Replay, SizeReplay
from .common import ReplayInput, compare, fresh_like, rmse, worst_status
from .localise import PieceFacts, capture_finding, mismatch_finding

__all__ = ["ReplayInput", "ReplayOutcome", "replay", "compare", "fresh_like", "rmse"]


@dataclass(frozen=True)
class ReplayOutcome:
    """The replay section and the findings that localise what failed."""

    replay: Replay
    findings: tuple[Finding, ...]


def replay_pieces(
    inputs: Sequence[ReplayInput],
    split_ops: Sequence[str],
    device: str,
    isolate: bool = False,
    on_progress: Optional[Callable[[str], None]] = None,
    roots: Sequence[str] = (),
    functions: Optional[dict[int, str]] = None,
    bisect: Optional[Any] = None,
    timings: bool = True,
) -> ReplayOutcome:
    """Replay each (size, graph), largest size first.

    Args:
        inputs: one entry per (capture size, graph), from the trace.
        split_ops: canonical split-op names.
        device: 'cpu' or 'cuda[:N]'.
        isolate: GPU only: capture each piece in its own memory pool.
        roots: the user's folders (where findings point).
        functions: graph index -> function name (for messages).
        bisect: ``options.Bisect``: only continue narrowing that piece's failure (a fresh worker).
        timings: GPU: time each piece eager and replayed (``plan`` leaves it out: it measures the engine's pass).
    Returns:
        ReplayOutcome.
    """
    if bisect is not None:
        return _continue_bisect(inputs, split_ops, bisect, roots, functions or {})
    cuda = device.startswith("cuda")
    sizes, facts = (_replay_cuda(inputs, split_ops, isolate, on_progress, timings) if cuda
                    else _replay_cpu(inputs, split_ops, isolate, on_progress))
    note = (
        "CPU: pieces re-run and compared with the unsplit graph; no CUDA graph was captured."
        if not cuda
        else "CUDA graphs captured as sglang does (warm-up on the current stream; warm-up and capture on one capture "
        "stream, in run order, " + ("each piece in its own pool" if isolate else "one shared pool")
        + "); replayed with fresh inputs against an fp64 eager reference."
    )
    mode = ("cuda-graph-isolated" if isolate else "cuda-graph") if cuda else "cpu"
    status = worst_status(s.status for s in sizes)
    return ReplayOutcome(Replay(device, mode, status, tuple(sizes), note), _findings(facts, roots, functions or {}))


def _replay_cpu(inputs: Sequence[ReplayInput], split_ops: Sequence[str], isolate: bool,
                on_progress: Optional[Callable[[str], None]]) -> tuple[list[SizeReplay], list[PieceFacts]]:
    from .. import _torch_compat as compat
    from .cpu import replay_size

    sizes, facts = [], []
    with compat.quiet_fx_errors():
        for ri in inputs:
            if on_progress:
                on_progress(f"replaying at {ri.capture_size} tokens")
            try:
                size, found = replay_size(ri, split_ops)
            except Exception as exc:  # keep the report: one size failing is a result
                size, found = SizeReplay(ri.capture_size, ri.graph_index, "error", (), message=one_line(exc)), []
            sizes.append(size)
            facts += found
    return sizes, facts


def _replay_cuda(inputs: Sequence[ReplayInput], split_ops: Sequence[str], isolate: bool,
                 on_progress: Optional[Callable[[str], None]], timings: bool = True) -> tuple[list[SizeReplay], list[PieceFacts]]:
    import torch

    from .. import _torch_compat as compat
    from .cuda import SizeRun

    # The target's own compiled code (a torch.compile helper inside an op) starts from nothing, as in the engine:
    # our trace and eager checks called it many times, and a CUDA-graph tree it keeps would be far past the
    # warm-up count the engine's capture meets it at.
    compat.reset()
    stream = torch.cuda.Stream()  # sglang: one global graph-capture stream for every size
    runs = [SizeRun(ri, split_ops, isolate, stream) for ri in inputs]
    sizes, facts = [], []
    with compat.quiet_fx_errors():
        warmed = [_guard(run.warm_up, False) for run in runs]  # the compile pass: every size before any capture
        for run, ok in zip(runs, warmed):
            if on_progress:
                on_progress(f"capturing at {run.ri.capture_size} tokens")
            try:
                size, found = run.capture_and_check(ok, timings)
            except Exception as exc:
                size, found = SizeReplay(run.ri.capture_size, run.ri.graph_index, "error", (), message=one_line(exc)), []
            sizes.append(size)
            facts += found
    return sizes, facts


def _continue_bisect(inputs: Sequence[ReplayInput], split_ops: Sequence[str], bisect: Any, roots: Sequence[str],
                     functions: dict[int, str]) -> ReplayOutcome:
    """Warm up (the piece's inputs), then go on narrowing ``bisect``'s prefix range in this fresh process."""
    import torch

    from .cuda import SizeRun

    ri = next(ri for ri in inputs if ri.capture_size == bisect.capture_size)
    run = SizeRun(ri, split_ops, False, torch.cuda.Stream())
    run.warm_up()
    piece = next(p for p in run.pieces.values() if p.index == bisect.piece)
    failure = run.bisect(piece, bisect.phase, bisect.lo, bisect.hi)
    facts = [PieceFacts(bisect.capture_size, bisect.graph, bisect.piece, failure)]
    note = f"bisection of piece {bisect.piece} at {bisect.capture_size} tokens, prefixes {bisect.lo}..{bisect.hi}"
    return ReplayOutcome(Replay("cuda", "bisect", "capture_failed", (), note), _findings(facts, roots, functions))


def _guard(fn: Callable[[], bool], default: bool) -> bool:
    try:
        return fn()
    except Exception:
        return default


def _findings(facts: Sequence[PieceFacts], roots: Sequence[str], functions: dict[int, str]) -> tuple[Finding, ...]:
    """One finding per (cause, op, piece) across sizes: the first size that showed it."""
    out: dict[tuple, Finding] = {}
    for f in facts:
        fn = functions.get(f.graph, "")
        if f.failure is not None:
            finding = capture_finding(f, roots, fn)
        elif f.mismatch is not None:
            finding = mismatch_finding(f, roots, fn)
        else:
            continue
        key = (finding.kind, finding.details.match_key(), finding.file, finding.line, f.piece)
        out.setdefault(key, finding)
    return tuple(out.values())
