"""Stage 2, trace: run the target under Dynamo the way piecewise CUDA graph capture does.

Token dims are marked dynamic (sglang: ``maybe_mark_dynamic``), every capture size is called
twice (warm-up, then capture) so recompiles show, and graph breaks are allowed
(``fullgraph=False``) so that every break is collected in one run; sglang's ``fullgraph=True``
would stop at the first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from . import _torch_compat as compat
from .load import Call, Target, tensor_at

DYNAMIC_MODES = ("maybe", "unbacked", "static")


@dataclass
class CapturedGraph:
    """A graph the backend received (live: holds the GraphModule)."""

    index: int
    compile_id: str
    gm: Any
    code: Any
    """The code object Dynamo compiled (set once its guards arrive)."""
    capture_sizes: list[int] = field(default_factory=list)
    recorded: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    """Capture size -> the graph's real inputs at the capture call (cloned before it ran)."""
    pinned: list[tuple[str, Any, list[tuple[str, int, str]]]] = field(default_factory=list)
    """Dynamic dims this compile specialised to a constant: (source, value, Python stack) (``compat.specialisations``)."""


@dataclass
class RawGuardSet:
    compile_id: str
    code: Any
    graph: Optional[int]
    guards: list[compat.RawGuard]


@dataclass
class RawRecompile:
    compile_id: str
    code: Any
    capture_size: Optional[int]
    call: int
    reasons: list[str]


@dataclass
class RawCallError:
    """An exception that escaped a call of the compiled module (the target fails even eagerly)."""

    capture_size: Optional[int]
    exc: BaseException


@dataclass
class TraceResult:
    """Everything Dynamo told us (live objects; ``analyze`` turns it into report records)."""

    graphs: list[CapturedGraph]
    breaks: list[compat.RawBreak]
    guard_sets: list[RawGuardSet]
    recompiles: list[RawRecompile]
    call_errors: list[RawCallError]
    sizes_per_break: dict[int, Optional[int]] = field(default_factory=dict)
    """Index into ``breaks`` -> capture size being run when it happened."""
    dynamic: str = "maybe"
    effects: Optional[dict[Any, str]] = None
    """``analyze.effects.delta`` of the first compiled call (side effects, for compile_divergence)."""
    size_times: dict[int, tuple[float, float, int]] = field(default_factory=dict)
    """tokens -> (first call's seconds, last call's seconds, graphs compiled during the size's calls): the first call
    at a size pays Dynamo's compile (and the backend's) when a graph is compiled for it, the last only runs."""


def trace_target(
    target: Target,
    dynamic: str = "maybe",
    calls_per_size: int = 2,
    on_progress: Optional[Callable[[str], None]] = None,
    record_inputs: bool = True,
) -> TraceResult:
    """Trace the target at each of its capture sizes.

    Args:
        target: from ``load.load``.
        dynamic: how token dims are marked: 'maybe' (sglang), 'unbacked', 'static'.
        calls_per_size: calls per capture size (warm-up + capture = 2).
        on_progress: called with a short status line per size.
        record_inputs: keep a copy of each graph's inputs at the capture call (for replay).
    Returns:
        TraceResult with live graphs and raw events.
    """
    rec = _Recorder()
    rec.calls_per_size, rec.record = calls_per_size, record_inputs
    compat.reset()
    # Largest size first, as the engines capture (sglang walks its capture sizes in reverse).
    calls = sorted(target.calls, key=lambda c: -(c.tokens or 0))
    try:
        with compat.quiet_torch_logs(), compat.quiet_fx_errors(), compat.tracing_config(), compat.dynamo_events() as events:
            compiled = compat.optimize(rec.backend, rec.guard_filter, rec.guard_fail)(target.module)
            for call in calls:
                if on_progress:
                    on_progress(f"tracing at {call.tokens} tokens" if call.tokens else "tracing")
                _mark(call, dynamic)
                _call_size(rec, compiled, call, calls_per_size, events,
                           (target.module, target.roots) if call is calls[0] else None)
    finally:
        compat.reset()  # drop Dynamo's references to the module and its caches
    return TraceResult(
        rec.graphs, events.breaks, rec.guard_sets, rec.recompiles, rec.call_errors, rec.sizes_per_break, dynamic,
        rec.effects, rec.size_times,
    )


def _call_size(rec: "_Recorder", compiled: Any, call: Call, calls_per_size: int, events: Any,
               watched: Optional[tuple[Any, Any]] = None) -> None:
    import torch

    import time

    from .fingerprint import delta, snapshot

    graphs_before, seconds = len(rec.graphs), []
    for i in range(calls_per_size):
        rec.size, rec.call = call.tokens, i + 1
        n_before = len(events.breaks)
        # the first compiled call's side effects (compile_divergence): (the module, the user's roots)
        before = snapshot(*watched) if watched is not None and i == 0 else None
        try:
            t0 = time.perf_counter()
            with torch.no_grad():
                compiled(*call.args, **call.kwargs)
            if torch.cuda.is_initialized():  # the forward's own time, not its launches'
                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - t0)
            if call.tokens is not None:
                rec.size_times[call.tokens] = (seconds[0], seconds[-1], len(rec.graphs) - graphs_before)
            if before is not None:
                rec.effects = delta(before, snapshot(*watched))
        except Exception as exc:  # the target itself failed (after Dynamo's fallback)
            rec.call_errors.append(RawCallError(call.tokens, exc))
            return
        finally:
            for j in range(n_before, len(events.breaks)):
                rec.sizes_per_break[j] = call.tokens


def _mark(call: Call, dynamic: str) -> None:
    if dynamic == "static":
        return
    for path, dim in call.token_dims.items():
        compat.mark_token_dim(tensor_at(call, path), dim, dynamic)


class _Recorder:
    """Backend and guard hooks; state lives here, not in module globals."""

    def __init__(self) -> None:
        self.graphs: list[CapturedGraph] = []
        self.guard_sets: list[RawGuardSet] = []
        self.recompiles: list[RawRecompile] = []
        self.call_errors: list[RawCallError] = []
        self.sizes_per_break: dict[int, Optional[int]] = {}
        self.pending_fails: list[compat.RawGuardFail] = []
        self.size: Optional[int] = None
        self.call = 0
        self.effects: Optional[dict[Any, str]] = None
        self.calls_per_size = 2
        self.record = True
        self.size_times: dict[int, tuple[float, float, int]] = {}

    def backend(self, gm: Any, example_inputs: Any) -> Callable[..., Any]:
        g = CapturedGraph(len(self.graphs), compat.current_compile_id(), gm, compat.current_frame_code(),
                          pinned=compat.specialisations())
        self.graphs.append(g)
        forward = gm.forward

        def run(*args: Any) -> Any:
            if self.size is not None:
                if self.size not in g.capture_sizes:
                    g.capture_sizes.append(self.size)
                if self.record and self.call == self.calls_per_size:
                    g.recorded[self.size] = _clone_inputs(args)
            return forward(*args)

        return run

    def guard_filter(self, entries: Any) -> list[bool]:
        cid = compat.current_compile_id()
        guards = [compat.guard_entry(e) for e in entries]
        last = self.graphs[-1] if self.graphs and self.graphs[-1].compile_id == cid else None
        code = last.code if last is not None else None
        if code is None and self.pending_fails:
            code = self.pending_fails[0].code
        self.guard_sets.append(RawGuardSet(cid, code, last.index if last else None, guards))
        if cid and not cid.endswith("/0"):
            reasons = [f.reason for f in self.pending_fails]
            self.recompiles.append(RawRecompile(cid, code, self.size, self.call, reasons))
        self.pending_fails = []
        return [True] * len(entries)

    def guard_fail(self, fail: Any) -> None:
        self.pending_fails.append(compat.guard_fail(fail))


def _clone_inputs(args: Any) -> tuple[Any, ...]:
    import torch

    out = []
    for a in args:
        if isinstance(a, torch.Tensor) and not isinstance(a, torch.nn.Parameter):
            out.append(a.detach().clone())
        else:
            out.append(a)
    return tuple(out)
