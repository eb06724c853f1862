"""breakable and full: the module's own forward captured as sglang 0.5.23's backends capture it, no torch.compile.

sglang (``runner_backend/breakable_cuda_graph_backend.py``, ``full_cuda_graph_backend.py``), per size, largest
first, on one capture stream and one shared pool: two eager warm-up forwards, then the capture forward; the output
is copied into one shared buffer (allocated for the largest size, sliced per size).

- **full**: the whole forward is one ``torch.cuda.CUDAGraph``; split ops are captured like everything else.
- **breakable** (BCG): the forward is captured as segments; each break point (``breakpoints``: a call of an
  ``@eager_on_graph`` function — attention, the indexer, MoE all-to-all — or of a break op) ends the segment, runs
  once eagerly, is recorded as a replay closure over its capture-time arguments, and a new segment starts in the
  same pool. Side streams forked from the capture stream and not joined are joined before a segment ends, as
  sglang's ``wait_stream`` hook does. Replay: segment, closure, segment, ... Split ops are not break points: sglang
  captures them into the segment unless an ``@eager_on_graph`` function calls them.

A dispatch mode watches the capture: the op being dispatched and its user line pin a failure without an FX graph,
and the break points' Python arguments are kept, so a break fed a per-call Python value (replayed at its
capture-time value) is named at its line. Fresh inputs are then copied into the static buffers, the graph
replayed, and the output compared with eager on the same inputs (eager twice: it must be reproducible).
"""

from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Optional, Sequence

from .. import _torch_compat as compat
from ..errors import one_line
from ..frames import live_user_frame
from ..report import SizeReplay
from ..breakpoints import python_arguments
from .common import clone, compare, fresh_like, non_finite_message

WARMUPS = 2
"""sglang's capture_one: two eager forwards before each capture."""


@dataclass
class PlainFailure:
    """Where a breakable/full capture or replay failed."""

    error: str
    phase: str
    op: str = ""
    site: tuple[str, int] = ("", 0)
    segment: int = 0
    frames: tuple[tuple[str, int], ...] = ()


@dataclass
class Break:
    """One break point's capture-time call: ``run()`` is the replay closure (its capture-time arguments)."""

    name: str
    run: Callable[[], Any]
    args: tuple
    kwargs: dict
    out: Any
    site: tuple[str, int]


@dataclass
class StaleBreak:
    """A break function whose Python arguments differ from its capture-time ones (breakable replays those)."""

    op: str
    site: tuple[str, int]
    argument: str
    captured: Any
    now: Any


@dataclass
class PlainOutcome:
    sizes: list[SizeReplay] = field(default_factory=list)
    failures: list[tuple[int, PlainFailure]] = field(default_factory=list)
    stale: list[tuple[int, StaleBreak]] = field(default_factory=list)
    graphs: list[Any] = field(default_factory=list)
    """Every size's graphs, alive until the end as in the engine (the shared pool's use count)."""


class _Watch:
    """A dispatch mode over the capture: the current op and user line, and (breakable) the segment cuts at break
    ops and ``@eager_on_graph`` calls, with sglang's join of forked side streams before each segment ends."""

    def __init__(self, roots: Sequence[str], is_break_op: Callable[[Any], bool], pool: Any, breakable: bool,
                 stream: Any) -> None:
        import torch

        base = compat.dispatch_mode_base()
        watch = self
        self.op, self.site = "", ("", 0)
        self.segments: list[Any] = []
        self.breaks: list[Break] = []
        self.current: Any = None
        self.pool, self.breakable, self.capturing, self.stream = pool, breakable, False, stream
        self.forked: dict[int, Any] = {}
        self.fork_sites: list[tuple[str, int]] = []
        """User lines that forked a side stream from the capture stream during capture."""
        self.roots = roots

        class _Mode(base):  # type: ignore[misc, valid-type]
            def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None) -> Any:
                kwargs = kwargs or {}
                from ..opnames import target_key

                watch.op = target_key(func)
                watch.site = watch.user_site()
                if not (watch.breakable and watch.capturing and is_break_op(func)):
                    return func(*args, **kwargs)
                return watch.cut(watch.op, lambda: func(*args, **kwargs), args, kwargs)

        self.mode = _Mode()
        self._torch = torch

    def user_site(self) -> tuple[str, int]:
        frame = live_user_frame(self.roots)
        return (frame.f_code.co_filename, frame.f_lineno) if frame is not None else ("", 0)

    def cut(self, name: str, run: Callable[[], Any], args: tuple, kwargs: dict) -> Any:
        """A break: end the segment, run once eagerly, record the closure, begin the next segment."""
        site = self.user_site()
        self.end_segment()
        out = run()
        self.breaks.append(Break(name, run, args, kwargs, out, site))
        self.begin_segment()
        return out

    def functions(self) -> Any:
        """``@eager_on_graph`` calls cut the capture (breakable, while capturing) or run as they are."""
        from ..breakpoints import eager_on_graph_calls

        def handler(name: str, run: Callable[[], Any], args: tuple, kwargs: dict) -> Any:
            if not (self.breakable and self.capturing):
                return run()
            self.op = name
            return self.cut(name, run, args, kwargs)

        return eager_on_graph_calls(handler)

    def streams(self) -> Any:
        """sglang's ``wait_stream`` hook: a side stream that waits on the capture stream is forked, one the capture
        stream waits on is joined; the rest are joined before a segment ends (breakable only: full joins nothing,
        and the fork's line is kept to name a capture that fails on unjoined work)."""
        import contextlib

        torch, watch = self._torch, self

        @contextlib.contextmanager
        def hooked() -> Any:
            original = torch.cuda.Stream.wait_stream
            cap = self.stream.cuda_stream

            def wait_stream(me: Any, other: Any) -> None:
                original(me, other)
                if watch.capturing and other.cuda_stream == cap and me.cuda_stream != cap:
                    watch.forked[me.cuda_stream] = me
                    watch.fork_sites.append(watch.user_site())
                elif me.cuda_stream == cap:
                    watch.forked.pop(other.cuda_stream, None)

            torch.cuda.Stream.wait_stream = wait_stream
            self._original_wait = original
            try:
                yield
            finally:
                torch.cuda.Stream.wait_stream = original

        return hooked()

    def begin_segment(self) -> None:
        self.current = self._torch.cuda.CUDAGraph()
        self.current.capture_begin(pool=self.pool)

    def end_segment(self) -> None:
        graph, self.current = self.current, None
        if graph is not None:
            import warnings

            join = getattr(self, "_original_wait", None)
            for side in list(self.forked.values()) if self.breakable else ():  # sglang joins them before capture_end
                if join is not None:
                    join(self.stream, side)
            self.forked.clear()
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The CUDA Graph is empty")
                graph.capture_end()
            self.segments.append(graph)


def replay_backend(target: Any, backend: str, break_ops: Sequence[str], roots: Sequence[str],
                   on_progress: Optional[Callable[[str], None]] = None,
                   sizes: Optional[Collection[int]] = None) -> PlainOutcome:
    """Capture ``target``'s forward under ``backend`` ('breakable' | 'full') at each size (of ``sizes``, when
    given), replay, compare. ``break_ops``: breakable's break ops (``@eager_on_graph`` functions are found by
    themselves)."""
    import torch

    from ..opnames import normalise_op_name, target_key

    compat.reset()  # the target's own compiled code starts from nothing, as in the engine
    wanted = {normalise_op_name(o) for o in break_ops}
    split = (lambda func: target_key(func) in wanted) if backend == "breakable" else (lambda func: False)
    stream, pool = torch.cuda.Stream(), torch.cuda.graph_pool_handle()
    outcome, shared = PlainOutcome(), [None]
    for call in sorted(target.calls, key=lambda c: -(c.tokens or 0)):
        if sizes is not None and call.tokens not in sizes:
            continue
        if on_progress:
            on_progress(f"{backend}: capturing at {call.tokens} tokens")
        try:
            _one_size(target.module, call, backend, split, roots, stream, pool, shared, outcome)
        except Exception as exc:  # one size failing is a result
            outcome.sizes.append(SizeReplay(call.tokens or 0, 0, "error", (), message=one_line(exc)))
        if outcome.failures:  # the engine's launch stops at the first size that fails capture
            break
    return outcome


def _one_size(module: Any, call: Any, backend: str, split: Callable[[Any], bool], roots: Sequence[str], stream: Any,
              pool: Any, shared: list, outcome: PlainOutcome) -> None:
    """Warm up, capture, then (when it captured) replay on fresh inputs and compare: one size's SizeReplay."""
    import torch

    from .cuda import healthy

    size = call.tokens or 0
    static = [clone(a) for a in call.args]
    kwargs = dict(call.kwargs)
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    with torch.no_grad(), torch.cuda.stream(stream):
        for _ in range(WARMUPS):
            warm = module(*static, **kwargs)
    torch.cuda.synchronize()
    if shared[0] is None and isinstance(warm, torch.Tensor):  # sized for the largest size, sliced per size
        shared[0] = torch.empty_like(warm)
    t1 = time.perf_counter()
    watch = _Watch(roots, split, pool, backend == "breakable", stream)
    graph, failure = _capture(module, static, kwargs, backend, watch, stream, pool, shared[0])
    alive = healthy()
    t2 = time.perf_counter()
    base = dict(capture_size=size, graph=0, warmup_ms=round((t1 - t0) * 1e3, 3), capture_ms=round((t2 - t1) * 1e3, 3),
                peak_mem_bytes=int(torch.cuda.max_memory_allocated()) if alive else 0,
                pool_bytes=compat.pool_bytes(pool) if alive else 0)
    if failure is not None:
        if not alive:
            failure.phase = "sticky"
        outcome.failures.append((size, failure))
        outcome.sizes.append(SizeReplay(status="capture_failed", pieces=(), message=failure.error, **base))
        return
    outcome.graphs.append((graph, watch.segments, watch.breaks))
    status, abs_e, rel_e, message = _check(module, static, kwargs, size, graph, watch, split, shared[0], outcome)
    outcome.sizes.append(SizeReplay(status=status, pieces=(), max_abs_err=abs_e, max_rel_err=rel_e, message=message,
                                    check_ms=round((time.perf_counter() - t2) * 1e3, 3), **base))


def _capture(module: Any, static: list, kwargs: dict, backend: str, watch: _Watch, stream: Any, pool: Any,
             out_buffer: Any) -> tuple[Any, Optional[PlainFailure]]:
    """The capture forward: one graph (full) or segments cut at the break points (breakable); the primary error
    kept."""
    import torch

    graph, primary = None, []

    def forward() -> None:
        watch.capturing = True
        try:
            _into(out_buffer, module(*static, **kwargs))
        except Exception as exc:  # ending the capture raises another error that would hide this one
            primary.append(exc)
            raise
        watch.capturing = False

    try:
        with torch.no_grad(), torch.cuda.stream(stream), watch.mode, watch.functions(), watch.streams():
            if backend == "full":
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool, stream=stream):
                    forward()
            else:
                torch.cuda.synchronize()
                watch.begin_segment()
                forward()
                watch.end_segment()
    except Exception as exc:
        error = primary[0] if primary else exc
        if watch.current is not None:  # end the open segment on its own stream, or capture stays active
            try:
                with torch.cuda.stream(stream):
                    watch.current.capture_end()
            except Exception:
                pass
        unjoined = "unjoined" in str(error) and watch.fork_sites  # the failure is at capture end: name the fork
        return None, PlainFailure(one_line(error), "capture", "Stream.wait_stream" if unjoined else watch.op,
                                  watch.fork_sites[0] if unjoined else watch.site, len(watch.segments),
                                  tuple((f.filename, int(f.lineno or 0)) for f in traceback.extract_tb(error.__traceback__)))
    return graph, None


def _check(module: Any, static: list, kwargs: dict, size: int, graph: Any, watch: _Watch, split: Callable[[Any], bool],
           out_buffer: Any, outcome: PlainOutcome) -> tuple[str, float, float, str]:
    """Fresh inputs into the static buffers, replay (segments and break closures), compare with eager; stale break
    arguments recorded in ``outcome``. Returns (status, max abs err, max rel err, message)."""
    import torch

    from ..opnames import target_key

    captured_args = [(b.site, python_arguments(b.args, b.kwargs)) for b in watch.breaks]
    gen = torch.Generator(device=next((a.device for a in static if isinstance(a, torch.Tensor)), "cuda"))
    gen.manual_seed(2000 + size)
    for buf in static:
        if isinstance(buf, torch.Tensor):
            buf.copy_(fresh_like(buf, gen))
    with torch.no_grad():
        if graph is not None:
            graph.replay()
        else:
            for i, segment in enumerate(watch.segments):
                segment.replay()
                if i < len(watch.breaks):  # the closure: capture-time arguments, new output into the captured one
                    _into(watch.breaks[i].out, watch.breaks[i].run())
        torch.cuda.synchronize()
        whole = out_buffer is not None and out_buffer.dim() and out_buffer.shape[0] >= size
        actual = clone(out_buffer[:size] if whole else out_buffer)
        expected, calls = _eager_with_breaks(module, static, kwargs, split, watch.breakable)
        again = module(*clone(static), **kwargs)
    abs_e, rel_e, close = compare(actual, expected)
    twice = compare(again, expected)
    for index, ((site, then), (_, now)) in enumerate(zip(captured_args, calls)):
        for name in then:
            if name in now and then[name] != now[name]:
                op = watch.breaks[index].name
                outcome.stale.append((size, StaleBreak(op, site, name, then[name], now[name])))
    message = "" if close else non_finite_message(abs_e, "the replayed forward differs from eager on the same fresh inputs")
    if not (twice[2] or math.isnan(twice[0])):  # eager differs from itself: no reproducible reference
        close, message = False, ("eager gives another result on a second call with the same inputs (host state: see "
                                 "host_state): there is no reproducible reference, so this replay is not called ok")
    return ("ok" if close else "mismatch"), abs_e, rel_e, message


def _into(dst: Any, src: Any) -> None:
    """Copy a forward's (or a break's) new output into the captured one, in place."""
    import torch

    if isinstance(dst, torch.Tensor) and isinstance(src, torch.Tensor):
        view = dst[: src.shape[0]] if dst.dim() and src.dim() and dst.shape[0] >= src.shape[0] else dst
        view.copy_(src)
    elif isinstance(dst, (tuple, list)) and isinstance(src, (tuple, list)):
        for d, s in zip(dst, src):
            _into(d, s)


def _eager_with_breaks(module: Any, static: list, kwargs: dict, is_break_op: Callable[[Any], bool],
                       breakable: bool) -> tuple[Any, list]:
    """An eager forward on the static inputs, with each break point's Python arguments (in call order)."""
    import contextlib

    from ..breakpoints import Depth

    base = compat.dispatch_mode_base()
    calls: list[tuple[tuple[str, int], dict[str, Any]]] = []
    depth = Depth(())

    class _Calls(base):  # type: ignore[misc, valid-type]
        def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kw: Any = None) -> Any:
            kw = kw or {}
            if is_break_op(func) and not depth.inside:
                calls.append((("", 0), python_arguments(args, kw)))
            return func(*args, **kw)

    functions = depth.functions(lambda name, args, kw, out: calls.append((("", 0), python_arguments(args, kw))))
    with _Calls(), (functions if breakable else contextlib.nullcontext()):
        out = module(*clone(static), **kwargs)
    return out, calls


def outcome_findings(outcome: PlainOutcome, backend: str, split_ops: Sequence[str], break_ops: Sequence[str] = (),
                     known: Sequence[Any] = ()) -> list[Any]:
    """capture_failed (pinned to the op and user line the watch saw) and stale break arguments (those ``known``
    findings did not predict), one per cause."""
    from ..causes import CAUSES, capture_error_cause
    from ..details import BreakArgDetails, CaptureDetails
    from ..frames import source_line
    from ..opnames import normalise_op_name
    from ..report import Finding

    split = {normalise_op_name(o) for o in split_ops}
    breaks = {normalise_op_name(o) for o in break_ops}
    predicted = {(f.details.function, f.details.argument) for f in known if isinstance(f.details, BreakArgDetails)}
    found: dict[tuple, Any] = {}
    for size, f in outcome.failures:
        cause = capture_error_cause(f.error, f.op, frames=tuple(fr for fr, _ in f.frames))
        eager = ["tc_piecewise"] * (f.op in split) + ["breakable"] * (f.op in breaks)
        note = (f" (capture-safe under {' and '.join(eager)}, where it runs eagerly, not under full)"
                if backend == "full" and eager else "")
        if backend == "full" and cause == "other_stream":
            note += (" (breakable joins a side stream forked from the capture stream before each segment ends, as "
                     "sglang does; full captures the forward as one graph and joins nothing)")
        file, line = f.site
        found.setdefault((cause, f.op, f.site), Finding(
            kind="capture_failed", severity="error", file=file, line=line, code=source_line(file, line), op=f.op,
            message=f"{backend}: CUDA-graph capture failed at {size} tokens at {f.op or 'the forward'}{note}: it "
                    f"{CAUSES[cause].what} — {f.error}",
            hint=CAUSES[cause].hint,
            details=CaptureDetails(capture_size=size, graph=0, piece=f.segment, target=f.op, primary_error=f.error,
                                   cause=cause, phase="capture", backend=backend)))
    for size, s in outcome.stale:
        if (s.op, s.argument) in predicted:
            continue  # the analysis named it already; the replay's mismatch confirms it
        file, line = s.site
        found.setdefault(("stale_break_arg", s.op, s.site, s.argument), Finding(
            kind="stale_break_arg", severity="error", file=file, line=line, code=source_line(file, line), op=s.op,
            message=f"breakable: the break point {s.op} was captured with {s.argument}={s.captured!r} and this call "
                    f"passes {s.now!r}: breakable replays a break with its capture-time arguments, so every replay "
                    f"uses {s.captured!r} and nothing fails",
            hint=CAUSES["stale_break_arg"].hint,
            details=BreakArgDetails(s.op, s.argument, "python_value", repr(s.captured), repr(s.now), size, "replay")))
    return list(found.values())
