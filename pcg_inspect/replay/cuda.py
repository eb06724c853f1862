"""GPU replay: capture the pieces as sglang's piecewise backend does, replay them with fresh inputs, compare.

The order of events mirrors sglang 0.5.23 (``cuda_piecewise_backend.py``, ``tc_piecewise_cuda_graph_backend.py``,
``prefill_cuda_graph_runner.py``), see docs/replay.md:

1. the compile pass: one eager forward per size on the current (default) stream;
2. the capture session, on one capture stream made current for the whole session
   (``graph_capture``): one eager warm-up forward (``num_finished_warmup``), then the capture
   forward, each non-split piece captured in run order into one shared pool, split pieces eager
   in between; ``gc.collect`` and ``torch.cuda.empty_cache`` run for the first piece only;
3. replay with fresh values copied into the static inputs; captured pieces' inputs are not copied.

Pieces run node by node (``NodeRunner``): an error inside capture is pinned to its node, and the
primary error is kept (torch's capture end raises a second one that would hide it).
"""

from __future__ import annotations

import math
import traceback
import time
from typing import Any, Optional, Sequence

from .. import _torch_compat as compat
from ..errors import one_line
from ..report import PieceReplay, SizeReplay
from .common import (RMSE_MULTIPLIER, gc_only_if, NodeRunner, ReplayInput, call_nodes, clone, compare, first_difference, fresh_args,
                     non_finite_message, rmse, uninitialised_outputs, worst_status)
from .localise import Failure, Mismatch, PieceFacts, classify_mismatch

TIMING_RUNS = 20


class GraphPiece:
    """One non-split piece: its graph, output, captured input addresses, and what went wrong."""

    def __init__(self, item: Any) -> None:
        self.name, self.index, self.module = item.submod_name, item.graph_id, item.module
        self.graph: Any = None
        self.output: Any = None
        self.addresses: list[int] = []
        self.failure: Optional[Failure] = None
        self.mismatch: Optional[Mismatch] = None
        self.stale_inputs = 0
        self.args: Optional[tuple[Any, ...]] = None
        """Its inputs in the last forward (what a bisection captures prefixes with)."""


def capture(module: Any, args: Sequence[Any], pool: Any, stream: Any, first: bool, upto: Optional[int] = None,
            keep: bool = False) -> tuple[Any, Any, Optional[Failure], NodeRunner]:
    """Capture ``module`` (its first ``upto`` call nodes) into a new CUDA graph in ``pool`` on ``stream``.

    The one capture routine: the capture session, ``--isolate`` (a pool per piece), prefix
    bisection and mismatch localisation all go through it.
    Returns:
        (graph or None, output, the failure or None, the runner that ran it).
    """
    import torch

    graph = torch.cuda.CUDAGraph()
    runner = NodeRunner(module, upto, keep)
    primary: Optional[BaseException] = None
    out = None
    try:
        with gc_only_if(first), torch.cuda.graph(graph, pool=pool, stream=stream):
            try:
                out = runner.run(*args)
            except Exception as exc:
                primary = exc
                raise
    except Exception as exc:
        error = primary or exc
        node = runner.node if primary is not None else None
        failure = Failure(one_line(error), "capture", node, runner.index if node is not None else -1,
                          frames=tuple((fs.filename, int(fs.lineno or 0)) for fs in traceback.extract_tb(error.__traceback__)))
        failure.sticky = not healthy()
        return None, None, failure, runner
    return graph, out, None, runner


def healthy() -> bool:
    """Whether this process's CUDA context still works (a failed capture can leave a sticky error)."""
    import torch

    try:
        torch.cuda.synchronize()
        return float(torch.ones(1, device="cuda").add_(1).sum()) == 2.0
    except Exception:
        return False


class SizeRun:
    """Capture, replay and check one graph at one size."""

    def __init__(self, ri: ReplayInput, split_ops: Sequence[str], isolate: bool, stream: Any) -> None:
        import torch

        from ..split import split_graph

        self.ri, self.isolate, self.stream = ri, isolate, stream
        self.split_gm, self.items = split_graph(ri.gm, split_ops)
        self.pieces = {it.submod_name: GraphPiece(it) for it in self.items if not it.is_split}
        self.pool = torch.cuda.graph_pool_handle()
        self.static = [clone(a) for a in ri.args]  # the runner's static input buffers
        self.ms: dict[str, float] = {}
        self.reproducible = True
        self.results: dict[str, tuple[float, float, bool]] = {}

    def warm_up(self) -> bool:
        """sglang's compile pass: one eager forward on the current stream (all sizes run it before any capture)."""
        import torch

        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        ok = self._drive("warmup")
        self.ms["warmup_ms"] = (time.perf_counter() - t0) * 1e3
        return ok

    def capture_and_check(self, warmed: bool, timings: bool = True) -> tuple[SizeReplay, list[PieceFacts]]:
        """The capture session on the capture stream, then the replay check and (``timings``) the per-piece timing."""
        import torch

        t0 = time.perf_counter()
        ok = warmed
        if ok:
            with torch.cuda.stream(self.stream):  # graph_capture(): the capture stream is current for the session
                ok = self._drive("capture-warmup") and self._drive("capture")
        alive = healthy()
        if alive:
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        check = self._check() if ok and alive else None
        t2 = time.perf_counter()
        self.ms.update(capture_ms=(t1 - t0) * 1e3, check_ms=(t2 - t1) * 1e3)
        timed = self._time() if timings and check is not None and healthy() else {}
        self._bisect_unplaced()
        return self._record(check, timed), self._facts()

    def _drive(self, phase: str) -> bool:
        """One forward of the split graph in ``phase``; False when a piece failed and the forward cannot go on."""
        import torch

        try:
            with torch.no_grad():
                _Driver(self, phase).run(*self.static)
        except _Abort:
            return False
        return True

    def _capture_piece(self, piece: GraphPiece, args: tuple[Any, ...], first: bool) -> Any:
        import torch

        pool = torch.cuda.graph_pool_handle() if self.isolate else self.pool
        piece.addresses = [a.data_ptr() for a in args if isinstance(a, torch.Tensor)]
        graph, out, failure, _ = capture(piece.module, args, pool, self.stream, first)
        if failure is None:
            piece.graph, piece.output = graph, out
            return out
        piece.failure = failure
        if failure.sticky:
            raise _Abort()
        return piece.module(*args)  # eager from now on, so the later pieces are still tried

    def _check(self) -> Optional[tuple[Any, Any, Any]]:
        """Fresh inputs into the static buffers; the graph replay against eager and an fp64 reference."""
        import torch

        fresh = fresh_args(self.ri.gm, self.ri.args, seed=1000 + self.ri.capture_size)
        for buf, new in zip(self.static, fresh):
            if isinstance(buf, torch.Tensor) and buf is not new:
                buf.copy_(new)
        with torch.no_grad():
            ref = _reference_fp64(self.ri.gm, self.static)
            eager = self.ri.gm(*clone(self.static))
            # a reference is one only if eager is a function of its inputs (an op reading host state is not)
            again, _, same = compare(self.ri.gm(*clone(self.static)), eager)
            self.reproducible = same or math.isnan(again)  # nan: NaN/Inf in the same places in both calls
            try:
                actual = _Driver(self, "replay").run(*self.static)
            except _Abort:
                return None
        torch.cuda.synchronize()
        return actual, eager, ref

    def _time(self) -> dict[str, tuple[float, float]]:
        try:
            return time_pieces(self.split_gm, self.pieces, self.static)
        except Exception:  # timing is a bonus; the comparison is the result
            return {}

    def _record(self, check: Optional[tuple[Any, Any, Any]], timings: dict[str, tuple[float, float]]) -> SizeReplay:
        import torch

        pieces = [self._piece_record(it, timings) for it in self.items]
        alive = healthy()
        peak = int(torch.cuda.max_memory_allocated()) if alive else 0
        pool = compat.pool_bytes(self.pool) if alive and not self.isolate else 0
        base = dict(capture_size=self.ri.capture_size, graph=self.ri.graph_index, peak_mem_bytes=peak, pool_bytes=pool,
                    **{k: round(self.ms.get(k, 0.0), 3) for k in ("warmup_ms", "capture_ms", "check_ms")})
        if check is None:
            status = worst_status(p.status for p in pieces)
            return SizeReplay(status=status if status != "ok" else "error", pieces=tuple(pieces),
                              message="the replay could not run: " + _first_failure(self.pieces), **base)
        actual, eager, ref = check
        abs_e, rel_e, close = compare(actual, eager)
        ratio, ok = 0.0, close
        if ref is not None and self.reproducible:  # the accuracy minifier's criterion against the wide reference
            r_c, r_e = rmse(actual, ref), rmse(eager, ref)
            ratio = r_c / r_e if r_e > 0 else (0.0 if r_c == 0 else math.inf)
            ok = close or r_c <= RMSE_MULTIPLIER * r_e + 1e-12
        message = non_finite_message(abs_e, "whole model differs from eager on fresh inputs")
        if not self.reproducible:  # eager differs from itself: there is no reference to be ok against
            ok = False
            message = ("eager gives another result on a second call with the same inputs (host state: see host_state): "
                       "there is no reproducible reference, so this replay is not called ok")
        status = worst_status(["ok" if ok else "mismatch"] + [p.status for p in pieces])
        return SizeReplay(status=status, pieces=tuple(pieces), max_abs_err=abs_e, max_rel_err=rel_e, rmse_ratio=round(ratio, 4),
                          message="" if ok else message, **base)

    def _piece_record(self, it: Any, timings: dict[str, tuple[float, float]]) -> PieceReplay:
        p = self.pieces.get(it.submod_name)
        eager_us, graph_us = timings.get(it.submod_name, (0.0, 0.0))
        if p is not None and p.failure is not None:
            status = {"warmup": "error", "capture": "capture_failed", "replay": "error"}[p.failure.phase]
            return PieceReplay(it.graph_id, False, status, 0, 0, eager_us, 0, p.failure.error)
        abs_e, rel_e, close = self.results.get(it.submod_name, (0.0, 0.0, True))
        msg = ""
        if p is not None and p.stale_inputs:
            close = False
            msg = (f"{p.stale_inputs} input address(es) changed since capture: replaying would read freed memory "
                   "(sglang's debug mode asserts here); make the producer write into a buffer allocated in a captured piece")
        elif not close:
            msg = non_finite_message(abs_e, "the replayed graph differs from the same piece run eagerly on the same inputs")
        return PieceReplay(it.graph_id, it.is_split, "ok" if close else "mismatch", abs_e, rel_e, eager_us, graph_us, msg)

    def _facts(self) -> list[PieceFacts]:
        out = []
        for p in self.pieces.values():
            if p.failure is not None or p.mismatch is not None:
                out.append(PieceFacts(self.ri.capture_size, self.ri.graph_index, p.index, p.failure, p.mismatch))
        return out

    def localise_mismatch(self, piece: GraphPiece, args: tuple[Any, ...]) -> None:
        """The first node whose replayed value differs: capture the piece again keeping every node's value."""
        import torch

        expected = NodeRunner(piece.module, keep=True)
        expected.run(*clone(args))
        with torch.cuda.stream(self.stream):
            NodeRunner(piece.module).run(*args)  # warm-up on the capture stream, as the session does
            graph, _, failure, runner = capture(piece.module, args, torch.cuda.graph_pool_handle(), self.stream, False, keep=True)
        if graph is None or failure is not None:
            return
        graph.replay()
        torch.cuda.synchronize()
        found = first_difference(runner.values, expected.values, piece.module)
        if found is not None:
            node, err = found
            piece.mismatch = Mismatch(node, err, classify_mismatch(node))


    def _bisect_unplaced(self) -> None:
        """Failures with no node (raised at capture end, or at replay): find the node by capturing growing prefixes."""
        for piece in self.pieces.values():
            f = piece.failure
            if f is None or f.node is not None or f.phase == "warmup" or piece.args is None:
                continue
            n = len(call_nodes(piece.module))
            if f.sticky:  # nothing more can run in this process: a fresh worker goes on
                f.searched = (0, n)
                continue
            found = self.bisect(piece, f.phase, 0, n)
            f.searched = found.searched
            if found.node is not None:
                f.node, f.node_index, f.sticky = found.node, found.node_index, found.sticky

    def bisect(self, piece: GraphPiece, phase: str, lo: int, hi: int) -> Failure:
        """Smallest prefix that fails, between ``lo`` (passes) and ``hi`` (fails) call nodes.

        Each attempt is a fresh graph in a fresh pool. Stops early when an attempt leaves a sticky
        CUDA error: ``searched`` then says where a fresh process has to go on.
        """
        nodes = call_nodes(piece.module)
        error = ""
        while hi - lo > 1:
            mid = (lo + hi) // 2
            failure = self._attempt(piece, phase, mid)
            if failure is None:
                lo = mid
                continue
            hi, error = mid, failure.error
            if failure.sticky and hi - lo > 1:
                return Failure(error, phase, None, -1, sticky=True, searched=(lo, hi))
            if failure.sticky:
                break
        node = nodes[hi - 1] if 0 < hi <= len(nodes) else None
        return Failure(error or (piece.failure.error if piece.failure else ""), phase, node, hi - 1, searched=(lo, hi))

    def _attempt(self, piece: GraphPiece, phase: str, upto: int) -> Optional[Failure]:
        import torch

        args = piece.args or ()
        with torch.cuda.stream(self.stream):
            try:
                NodeRunner(piece.module, upto).run(*args)
            except Exception as exc:
                return Failure(one_line(exc), "capture", sticky=not healthy())
            graph, _, failure, _ = capture(piece.module, args, torch.cuda.graph_pool_handle(), self.stream, True, upto)
        if failure is not None or phase != "replay":
            return failure
        try:
            graph.replay()
            torch.cuda.synchronize()
        except Exception as exc:
            return Failure(one_line(exc), "replay", sticky=not healthy())
        return None


class _Abort(Exception):
    """A piece failed in a way the forward cannot go past (eager failure, sticky CUDA error)."""


class _Driver:
    """One forward of the split graph: split pieces eager, captured pieces as the phase says."""

    def __init__(self, run: SizeRun, phase: str) -> None:
        import torch.fx

        self.run_, self.phase, self.first = run, phase, True
        driver = self

        class _Interp(torch.fx.Interpreter):
            def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
                piece = run.pieces.get(str(target))
                if piece is None:
                    return super().call_module(target, args, kwargs)
                return driver.piece(piece, tuple(args))

        self.interp = _Interp(run.split_gm)

    def run(self, *args: Any) -> Any:
        return self.interp.run(*args)

    def piece(self, piece: GraphPiece, args: tuple[Any, ...]) -> Any:
        piece.args = args
        if self.phase in ("warmup", "capture-warmup"):
            return self._eager(piece, args)
        if self.phase == "capture":
            first, self.first = self.first, False
            return self.run_._capture_piece(piece, args, first) if piece.failure is None else piece.module(*args)
        return self._replay(piece, args)

    def _eager(self, piece: GraphPiece, args: tuple[Any, ...]) -> Any:
        runner = NodeRunner(piece.module)
        try:
            return runner.run(*args)
        except Exception as exc:
            phase = "warmup" if self.phase == "warmup" else "capture"
            piece.failure = Failure(one_line(exc), phase, runner.node, runner.index, sticky=not healthy())
            raise _Abort() from exc

    def _replay(self, piece: GraphPiece, args: tuple[Any, ...]) -> Any:
        import torch

        expected = piece.module(*clone(args))
        if piece.graph is None:
            return piece.module(*args)
        now = [a.data_ptr() for a in args if isinstance(a, torch.Tensor)]
        stale = [i for i, (x, y) in enumerate(zip(now, piece.addresses)) if x != y]
        piece.stale_inputs = len(stale)
        if stale:
            # The graph would read whatever now lies at the captured addresses: report it, run eagerly.
            piece.mismatch = _stale_reader(piece, args, stale[0])
            return piece.module(*args)
        try:
            piece.graph.replay()
            torch.cuda.synchronize()
        except Exception as exc:
            piece.failure = Failure(one_line(exc), "replay", sticky=not healthy())
            raise _Abort() from exc
        result = compare(piece.output, expected, uninitialised_outputs(piece.module))
        self.run_.results[piece.name] = result
        if not result[2] and not math.isnan(result[0]):  # nan: NaN/Inf on both sides, the non_finite finding says where
            self.run_.localise_mismatch(piece, args)
        return piece.output


def _stale_reader(piece: GraphPiece, args: tuple[Any, ...], tensor_position: int) -> Optional[Mismatch]:
    """The first node of the piece that reads the input whose address changed."""
    import torch

    placeholders = [n for n in piece.module.graph.nodes if n.op == "placeholder"]
    positions = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
    if tensor_position >= len(positions) or positions[tensor_position] >= len(placeholders):
        return None
    stale = placeholders[positions[tensor_position]]
    readers = [n for n in call_nodes(piece.module) if stale in n.all_input_nodes]
    return Mismatch(readers[0], 0.0, "stale_address") if readers else None


def _first_failure(pieces: dict[str, GraphPiece]) -> str:
    for p in pieces.values():
        if p.failure is not None:
            return f"piece {p.index}: {p.failure.error}"
    return "CUDA error"


REFERENCE_MEMORY_FRACTION = 0.4
"""An upcast copy of the weights may take at most this share of the free GPU memory."""


def _reference_fp64(gm: Any, args: Sequence[Any]) -> Any:
    """The graph in float64 (else float32) on the same values: what the replay's error is measured against.

    A full-size MoE layer (23 GB of bf16 experts) has no room for a float64 copy: the widest dtype
    that fits is used, and with none the comparison is against eager in the run dtype only (None).
    """
    import torch

    floats = sum(a.numel() for a in args if isinstance(a, torch.Tensor) and a.is_floating_point())
    budget = torch.cuda.mem_get_info()[0] * REFERENCE_MEMORY_FRACTION
    for dtype in (torch.float64, torch.float32):
        if floats * torch.tensor([], dtype=dtype).element_size() > budget:
            continue
        try:  # many custom kernels have no fp64 (or fp32) support: fall back a step
            return gm(*[a.detach().to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else clone(a) for a in args])
        except Exception:
            continue
    return None


def time_pieces(split_gm: Any, pieces: dict[str, GraphPiece], args: Sequence[Any]) -> dict[str, tuple[float, float]]:
    """Median eager and graph time per piece (µs, CUDA events), timing whole forwards in model order.

    A piece is never replayed alone: its graph may reuse, for buffers a later split op fills,
    memory of its own temporaries, so only the engine's order gives meaningful state.
    """
    import torch

    samples: dict[tuple[str, str], list[float]] = {}
    for mode in ("eager", "graph"):
        for i in range(TIMING_RUNS + 1):
            events = _timed_forward(split_gm, pieces, args, mode)
            torch.cuda.synchronize()
            if i == 0:
                continue  # warm-up
            for name, start, end in events:
                samples.setdefault((name, mode), []).append(start.elapsed_time(end) * 1000.0)
    out = {}
    for name in {n for n, _ in samples}:
        eager = sorted(samples.get((name, "eager"), [0.0]))
        graph = sorted(samples.get((name, "graph"), [0.0]))
        captured = name in pieces and pieces[name].graph is not None
        out[name] = (eager[len(eager) // 2], graph[len(graph) // 2] if captured else 0.0)
    return out


def _timed_forward(split_gm: Any, pieces: dict[str, GraphPiece], args: Sequence[Any], mode: str) -> list[tuple[str, Any, Any]]:
    import torch
    import torch.fx

    events: list[tuple[str, Any, Any]] = []

    class _Timed(torch.fx.Interpreter):
        def call_module(self, target: Any, a: Any, kw: Any) -> Any:
            name = str(target)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            piece = pieces.get(name)
            start.record()
            if mode == "graph" and piece is not None and piece.graph is not None:
                piece.graph.replay()
                out = piece.output
            else:
                out = super().call_module(target, a, kw)
            end.record()
            events.append((name, start, end))
            return out

    _Timed(split_gm).run(*args)
    return events
