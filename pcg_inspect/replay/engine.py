"""The engine's capture pass over a whole schedule, measured: what sglang's tc_piecewise backend pays at launch.

``pcg-inspect plan`` on a GPU. The checks (``cuda.SizeRun``: fresh inputs, an fp64 reference, localisation) run at a
few sizes only; every size of the schedule is captured here the way sglang 0.5.23 does it
(``cuda_piecewise_backend.py``, ``piecewise_cuda_graph_runner``), with nothing of ours in between:

1. the compile pass: one forward per size, largest first, on the current stream (the trace ran it: its time is
   the trace's, ``SizeCompile.run_s``);
2. the capture session on one capture stream, with sglang's ``freeze_gc`` around it: per size, largest first, one
   warm-up forward and the capture forward, every non-split piece captured into **one pool shared by every size
   and piece**; ``gc.collect`` and ``empty_cache`` run for the first piece of each forward only; a piece's output is
   not kept (sglang keeps a weak reference), so its memory goes back to the pool for the next piece and the next
   size to reuse.

Per size it records the capture session's time, how much the shared pool holds after the size (the pool only
grows) and the peak memory above what was allocated before the session.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import statistics
import time
from typing import Any, Callable, Iterator, Optional, Sequence

from .. import _torch_compat as compat
from ..errors import one_line
from ..report import SizeCapture
from .common import ReplayInput, gc_only_if


def capture_schedule(inputs: Sequence[ReplayInput], split_ops: Sequence[str], forwards: dict[int, float],
                     on_progress: Optional[Callable[[str], None]] = None, repeats: int = 1) -> tuple[SizeCapture, ...]:
    """Capture every (size, graph) of ``inputs`` as the engine does, largest size first; one record per input.
    ``forwards``: size -> milliseconds of the compile pass's forward (the trace ran it: ``SizeCompile.run_s``).

    ``repeats`` > 1: the capture session (a fresh pool each time) runs that many times and each size keeps its
    median time; the pool and the peak are the first session's (they do not change).
    A size whose capture raises is recorded (``capture_failed``) and the pass goes on, unless the CUDA context is
    left broken: the remaining sizes are then ``error`` without running.
    """
    from ..split import split_graph
    from .cuda import healthy

    order = sorted(inputs, key=lambda ri: -ri.capture_size)
    if not healthy():  # a check before left this process's CUDA context broken: nothing more can run here
        return tuple(SizeCapture(ri.capture_size, ri.graph_index, 0, 0.0, 0.0, 0, 0, "error",
                                 "not run: the CUDA context broke in the checks before") for ri in order)
    splits: dict[int, Any] = {}  # one split module per graph, its pieces captured at every size, as in the engine
    for ri in order:
        if id(ri.gm) not in splits:
            splits[id(ri.gm)] = split_graph(ri.gm, split_ops)
    runs = [(ri, splits[id(ri.gm)]) for ri in order]
    warm = [forwards.get(ri.capture_size, 0.0) for ri in order]
    passes = [_one_pass(runs, warm, on_progress)]
    while len(passes) < repeats and all(c.status == "ok" for c in passes[0]):
        passes.append(_one_pass(runs, warm, None))
    if len(passes) == 1:
        return passes[0]
    out = []
    for i, first in enumerate(passes[0]):
        out.append(dataclasses.replace(first, capture_ms=round(statistics.median(p[i].capture_ms for p in passes), 3)))
    return tuple(out)


def _one_pass(runs: Sequence[tuple[ReplayInput, Any]], warm: Sequence[float],
              on_progress: Optional[Callable[[str], None]]) -> tuple[SizeCapture, ...]:
    """The capture session into a fresh shared pool; the graphs are dropped at the end."""
    import torch

    pool, stream = torch.cuda.graph_pool_handle(), torch.cuda.Stream()
    graphs: list[Any] = []  # the captured graphs hold their pool memory, as the engine's entries do
    gc.collect()  # what the checks before left in reference cycles is freed now, not inside the measured session
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    out: list[SizeCapture] = []
    with torch.no_grad(), _frozen_gc():
        broken = _capture_session(runs, pool, stream, graphs, warm, before, out, on_progress)
    graphs.clear()
    if not broken:
        torch.cuda.empty_cache()
    return tuple(out)


@contextlib.contextmanager
def _frozen_gc() -> Iterator[None]:
    """sglang's ``freeze_gc`` around the capture session (its default, ``--enable-cudagraph-gc`` off): collect once,
    then move every object to the permanent generation, so the collection each size's first piece runs, and any
    automatic one, walks only what the session allocates."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _capture_session(runs: Sequence[tuple[ReplayInput, Any]], pool: Any, stream: Any, graphs: list[Any],
                     warm: Sequence[float], before: int, out: list[SizeCapture],
                     on_progress: Optional[Callable[[str], None]]) -> str:
    """Per size, largest first: a warm-up forward and the capture forward on the capture stream; a record each in
    ``out``. Returns why the CUDA context broke ('' when it did not)."""
    import torch

    from .cuda import healthy

    broken = ""
    for i, (ri, (split_gm, items)) in enumerate(runs):
        if on_progress:
            on_progress(f"capturing {ri.capture_size} tokens ({i + 1}/{len(runs)} sizes)")
        if broken:
            out.append(SizeCapture(ri.capture_size, ri.graph_index, 0, round(warm[i], 3), 0.0, 0, 0, "error",
                                   "not run: " + broken))
            continue
        # sglang's first piece (``is_first_graph``) collects garbage at every size, the others never
        captured = _Capturing(split_gm, {it.submod_name for it in items if not it.is_split}, pool, stream, [True], graphs)
        t0 = time.perf_counter()
        status, message = "ok", ""
        try:
            with torch.cuda.stream(stream):
                split_gm(*ri.args)  # the session's warm-up forward
                captured.run(*ri.args)
            torch.cuda.synchronize()
        except Exception as exc:  # one size failing is a result; the checked sizes say where
            status, message = "capture_failed", one_line(exc)
            if not healthy():
                broken = f"the CUDA context broke at {ri.capture_size} tokens: {message}"
        ms = (time.perf_counter() - t0) * 1e3
        alive = not broken
        out.append(SizeCapture(ri.capture_size, ri.graph_index, captured.count, round(warm[i], 3), round(ms, 3),
                               compat.pool_bytes(pool) if alive else 0,
                               max(0, int(torch.cuda.max_memory_allocated()) - before) if alive else 0,
                               status, message))
    return broken


class _Capturing:
    """One capture forward of a split graph: each captured piece into a new graph in the shared pool, its output
    handed on and not kept; split pieces eager in between."""

    def __init__(self, split_gm: Any, captured: set[str], pool: Any, stream: Any, first: list[bool], graphs: list[Any]) -> None:
        import torch.fx

        self.count = 0
        outer = self

        class _Interp(torch.fx.Interpreter):
            def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
                if str(target) not in captured:
                    return super().call_module(target, args, kwargs)
                module = self.fetch_attr(str(target))
                graph = torch.cuda.CUDAGraph()
                with gc_only_if(first[0]), torch.cuda.graph(graph, pool=pool, stream=stream):
                    result = module(*args, **kwargs)
                first[0] = False
                graphs.append(graph)
                outer.count += 1
                return result

        self.interp = _Interp(split_gm)

    def run(self, *args: Any) -> Any:
        return self.interp.run(*args)
