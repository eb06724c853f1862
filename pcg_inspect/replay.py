"""Stage 5, replay: run the pieces PCG would capture and compare them with eager.

CPU (``mode='cpu'``): record every piece's real inputs and outputs through an FX interpreter, re-run
each piece and the whole split module on fresh inputs, compare with the unsplit graph. This checks
the split itself (mutation order, pieces that read state); no CUDA graph is captured.

GPU (``mode='cuda-graph'``): as sglang's piecewise backend does it — warm-up, then capture each
non-split piece in run order on a side stream into one shared memory pool, split pieces eager in
between; then replay with fresh values copied into the model's static input buffers (as the
runner does) and compare with an fp64 eager reference. Like sglang, intermediate inputs are not
copied: a piece whose input address changed since capture reads stale memory, and is reported.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from .errors import one_line
from .report import PieceReplay, Replay, SizeReplay

RMSE_MULTIPLIER = 3.0  # torch's accuracy minifier uses a small multiple of eager's error
TIMING_RUNS = 20


@dataclass
class ReplayInput:
    """One graph to replay at one capture size (live)."""

    capture_size: int
    graph_index: int
    gm: Any
    args: tuple[Any, ...]
    """The graph's real inputs at that size (weights included), as recorded at the capture call."""


def replay(
    inputs: Sequence[ReplayInput],
    split_ops: Sequence[str],
    device: str,
    isolate: bool = False,
    on_progress: Optional[Callable[[str], None]] = None,
) -> Replay:
    """Replay each (size, graph) and build the replay section.

    Args:
        inputs: one entry per capture size, from the trace.
        split_ops: canonical split-op names.
        device: 'cpu' or 'cuda'.
        isolate: GPU only: capture each piece in its own memory pool.
    Returns:
        The Replay record.
    """
    cuda = device.startswith("cuda")
    mode = ("cuda-graph-isolated" if isolate else "cuda-graph") if cuda else "cpu"
    sizes = []
    for ri in inputs:
        if on_progress:
            on_progress(f"replaying at {ri.capture_size} tokens")
        try:
            sizes.append(_replay_cuda(ri, split_ops, isolate) if cuda else _replay_cpu(ri, split_ops))
        except Exception as exc:  # keep the report: one size failing is a result
            sizes.append(SizeReplay(ri.capture_size, ri.graph_index, "error", (), message=one_line(exc)))
    note = (
        "CPU: pieces re-run and compared with the unsplit graph; no CUDA graph was captured."
        if not cuda
        else "CUDA graphs captured per piece in run order"
        + (" (each piece in its own pool)" if isolate else " into one shared pool")
        + "; replayed with fresh inputs against an fp64 eager reference."
    )
    return Replay(device, mode, _worst(s.status for s in sizes), tuple(sizes), note)


_ORDER = ("ok", "skipped", "mismatch", "capture_failed", "error")


def _worst(statuses: Any) -> str:
    worst = "ok"
    for s in statuses:
        if _ORDER.index(s) > _ORDER.index(worst):
            worst = s
    return worst


def replay_in_subprocess(options: Any, on_progress: Optional[Callable[[str], None]] = None) -> Replay:
    """Run the GPU replay in a child process (re-tracing the target there).

    An illegal memory access or a device-side assert poisons the CUDA context for good; in a
    child it costs that child only, and the parent still writes the report with the failure.
    """
    import dataclasses
    import json
    import os
    import subprocess
    import sys
    import tempfile

    from .report import _from_jsonable

    opts = dataclasses.asdict(options)
    opts["replay_subprocess"] = False
    opts["observe_ops"] = False  # the parent already ran the op checks
    with tempfile.TemporaryDirectory(prefix="pcg-replay-") as tmp:
        out_path = os.path.join(tmp, "replay.json")
        cmd = [sys.executable, "-m", "pcg_inspect.replay", json.dumps(opts), out_path]
        if on_progress:
            on_progress("replaying CUDA graphs in a child process")
        env = dict(os.environ, PCG_INSPECT_ROLE="replay-worker")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode == 0 and os.path.exists(out_path):
            with open(out_path, encoding="utf-8") as fh:
                return _from_jsonable(Replay, json.load(fh))
    lines = [ln for ln in (proc.stderr or "").splitlines() if ln.strip()]
    last_size = [ln for ln in lines if ln.startswith("pcg-replay: ")]
    where = f" while {last_size[-1][len('pcg-replay: '):]}" if last_size else ""
    reason = next((ln for ln in reversed(lines) if "Error" in ln or "error" in ln), lines[-1] if lines else "")
    return Replay(
        options.device,
        "cuda-graph-isolated" if options.isolate else "cuda-graph",
        "error",
        (),
        f"the replay process died (exit {proc.returncode}){where}: {reason.strip()[:400]}",
    )


def _worker_main(argv: Sequence[str]) -> int:
    import json
    import sys

    from ._io import write_atomic
    from .pipeline import TraceOptions, run_trace

    opts = json.loads(argv[0])
    opts["capture_sizes"] = tuple(opts["capture_sizes"])
    opts["split_ops"] = tuple(opts["split_ops"])
    opts["overrides"] = tuple(opts.get("overrides", ()))
    run = run_trace(
        TraceOptions(**opts), progress=lambda msg: print(f"pcg-replay: {msg}", file=sys.stderr, flush=True)
    )
    if run.report.replay is None:
        print("pcg-replay: no replay was produced", file=sys.stderr)
        return 1
    write_atomic(argv[1], json.dumps(run.report.to_dict()["replay"]))
    return 0


# ---------------------------------------------------------------- shared helpers


def _tensor(x: Any) -> bool:
    import torch

    return isinstance(x, torch.Tensor)


def _clone(x: Any) -> Any:
    import torch

    if isinstance(x, torch.nn.Parameter):
        return x  # weights are read-only in forward: no copy
    if isinstance(x, torch.Tensor):
        return x.detach().clone()
    if isinstance(x, (list, tuple)):
        return type(x)(_clone(v) for v in x)
    return x


def _flat(x: Any) -> list[Any]:
    if isinstance(x, (list, tuple)):
        return [t for v in x for t in _flat(v)]
    return [x] if _tensor(x) else []


def fresh_like(x: Any, generator: Any = None) -> Any:
    """New values of the same shape/dtype/device: normal floats, ints within the observed range."""
    import torch

    if isinstance(x, torch.nn.Parameter) or not isinstance(x, torch.Tensor):
        return x
    if x.is_floating_point():
        return torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
    if x.dtype == torch.bool:
        return torch.randint(0, 2, x.shape, device=x.device, generator=generator).bool()
    if x.numel() == 0:
        return x.clone()
    lo, hi = int(x.min()), int(x.max())
    if x.numel() <= hi - lo + 1:
        # Integer inputs are mostly indices (positions, cache slots): keep them distinct, as the
        # engine does; duplicate indices make scatter-like kernels (index_copy_) nondeterministic.
        perm = torch.randperm(hi - lo + 1, generator=generator, device=x.device)[: x.numel()] + lo
        return perm.to(x.dtype).reshape(x.shape)
    return torch.randint(lo, hi + 1, x.shape, dtype=x.dtype, device=x.device, generator=generator)


def _is_state(x: Any, gm_placeholder: Any) -> bool:
    # Buffers (k caches) keep their values: fresh values would change what the graph means.
    from . import _torch_compat as compat

    return compat.is_param_placeholder(gm_placeholder)


def _fresh_args(gm: Any, args: Sequence[Any], seed: int) -> list[Any]:
    import torch

    gens: dict[str, Any] = {}
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    out = []
    for ph, a in zip(placeholders, args):
        if not isinstance(a, torch.Tensor) or _is_state(a, ph):
            out.append(_clone(a))
            continue
        key = str(a.device)
        if key not in gens:
            gens[key] = torch.Generator(device=a.device)
            gens[key].manual_seed(seed)
        out.append(fresh_like(a, gens[key]))
    return out


def compare(actual: Any, expected: Any, skip: frozenset[int] = frozenset()) -> tuple[float, float, bool]:
    """(max abs err, max rel err, close) over all tensors, with dtype-aware tolerance.

    ``skip``: flat output positions not to compare (uninitialised buffers from ``empty``).
    """
    import torch

    a_list, e_list = _flat(actual), _flat(expected)
    if len(a_list) != len(e_list):
        return math.inf, math.inf, False
    max_abs = max_rel = 0.0
    close = True
    for i, (a, e) in enumerate(zip(a_list, e_list)):
        if i in skip:
            continue
        if a.shape != e.shape:
            return math.inf, math.inf, False
        if not a.is_floating_point():
            same = bool(torch.equal(a.cpu(), e.cpu()))
            max_abs = max(max_abs, 0.0 if same else float((a.cpu().double() - e.cpu().double()).abs().max()))
            close &= same
            continue
        a64, e64 = a.detach().double().cpu(), e.detach().double().cpu()
        diff = (a64 - e64).abs()
        if diff.numel():
            max_abs = max(max_abs, float(diff.max()))
            max_rel = max(max_rel, float((diff / e64.abs().clamp_min(1e-6)).max()))
        rtol, atol = _tol(a.dtype)
        close &= bool(torch.allclose(a64, e64, rtol=rtol, atol=atol, equal_nan=True))
    return max_abs, max_rel, close


def _tol(dtype: Any) -> tuple[float, float]:
    import torch

    if dtype in (torch.float16, torch.bfloat16):
        return 2e-2, 2e-2
    if dtype == torch.float32:
        return 1.3e-5, 1e-4
    return 1e-7, 1e-9


_EMPTY_OPS = ("empty", "empty_like", "new_empty", "empty_strided", "empty.memory_format")


def uninitialised_outputs(module: Any) -> frozenset[int]:
    """Flat positions of a piece's outputs produced by an ``empty*`` op: their values are garbage
    until a later piece (an attention op "with output") writes them, so they are not compared."""
    out_node = next((n for n in module.graph.nodes if n.op == "output"), None)
    if out_node is None:
        return frozenset()
    flat: list[Any] = []

    def walk(a: Any) -> None:
        if isinstance(a, (list, tuple)):
            for v in a:
                walk(v)
        else:
            flat.append(a)

    walk(out_node.args[0])
    skip = set()
    for i, n in enumerate(flat):
        target = getattr(n, "target", None)
        name = getattr(target, "__name__", None) or str(target)
        if getattr(n, "op", "") in ("call_function", "call_method") and name.split(".")[-1] in _EMPTY_OPS:
            skip.add(i)
        elif getattr(n, "op", "") in ("call_function",) and any(e in str(target) for e in ("aten.empty", "aten.new_empty")):
            skip.add(i)
    return frozenset(skip)


def rmse(a: Any, b: Any) -> float:
    """Root-mean-square error over all float tensors (fp64)."""
    num, n = 0.0, 0
    for x, y in zip(_flat(a), _flat(b)):
        if x.is_floating_point():
            d = x.detach().double().cpu() - y.detach().double().cpu()
            num += float((d * d).sum())
            n += d.numel()
    return math.sqrt(num / n) if n else 0.0


class _Recorder:
    """Runs a split GraphModule and records each submodule's inputs and outputs (clones)."""

    def __init__(self, split_gm: Any) -> None:
        import torch.fx

        self.records: dict[str, tuple[tuple[Any, ...], Any]] = {}
        recorder = self

        class Interp(torch.fx.Interpreter):
            def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
                saved = _clone(tuple(args))
                out = super().call_module(target, args, kwargs)
                recorder.records[str(target)] = (saved, _clone(out))
                return out

        self.interp = Interp(split_gm)

    def run(self, *args: Any) -> Any:
        return self.interp.run(*args)


# ---------------------------------------------------------------- CPU


def _replay_cpu(ri: ReplayInput, split_ops: Sequence[str]) -> SizeReplay:
    import torch

    from .split import split_graph

    split_gm, items = split_graph(ri.gm, split_ops)
    fresh = _fresh_args(ri.gm, ri.args, seed=ri.capture_size)
    with torch.no_grad():
        expected = ri.gm(*_clone(fresh))
        rec = _Recorder(split_gm)
        actual = rec.run(*_clone(fresh))
        pieces = []
        for it in items:
            saved_in, saved_out = rec.records.get(it.submod_name, ((), None))
            t0 = time.perf_counter()
            out = it.module(*_clone(saved_in))
            us = (time.perf_counter() - t0) * 1e6
            abs_e, rel_e, close = compare(out, saved_out, uninitialised_outputs(it.module))
            pieces.append(
                PieceReplay(it.graph_id, it.is_split, "ok" if close else "mismatch", abs_e, rel_e, us, 0.0,
                            "" if close else "re-running the piece on its recorded inputs gave another result (it reads state that changed)")
            )
    abs_e, rel_e, close = compare(actual, expected)
    status = "ok" if close and all(p.status == "ok" for p in pieces) else "mismatch"
    msg = "" if close else "the split module differs from the unsplit graph on the same fresh inputs"
    return SizeReplay(ri.capture_size, ri.graph_index, status, tuple(pieces), abs_e, rel_e, 0.0, 0, msg)


# ---------------------------------------------------------------- GPU


class _CapturedPiece:
    def __init__(self, module: Any, pool: Any, stream: Any) -> None:
        self.module, self.pool, self.stream = module, pool, stream
        self.graph: Any = None
        self.output: Any = None
        self.addresses: list[int] = []
        self.error = ""
        self.stale_inputs = 0

    def capture(self, args: Sequence[Any]) -> Any:
        import torch

        self.addresses = [a.data_ptr() for a in args if isinstance(a, torch.Tensor)]
        g = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(g, pool=self.pool, stream=self.stream):
                out = self.module(*args)
        except Exception as exc:
            self.error = one_line(exc)
            torch.cuda.synchronize()
            return self.module(*args)  # eager from now on, as the engine would have to
        self.graph, self.output = g, out
        return out

    def replay(self, args: Sequence[Any]) -> Any:
        import torch

        if self.graph is None:
            return self.module(*args)
        now = [a.data_ptr() for a in args if isinstance(a, torch.Tensor)]
        self.stale_inputs = sum(1 for x, y in zip(now, self.addresses) if x != y)
        if self.stale_inputs:
            # The graph would read whatever now lies at the captured addresses (an illegal
            # access or silent garbage): report it and run eagerly instead of replaying.
            return self.module(*args)
        self.graph.replay()
        return self.output


def _replay_cuda(ri: ReplayInput, split_ops: Sequence[str], isolate: bool) -> SizeReplay:
    import torch
    import torch.fx

    from .split import split_graph

    split_gm, items = split_graph(ri.gm, split_ops)
    torch.cuda.reset_peak_memory_stats()
    static_inputs = [_clone(a) for a in ri.args]  # the runner's static input buffers
    stream = torch.cuda.Stream()
    shared_pool = torch.cuda.graph_pool_handle()
    captured = {
        it.submod_name: _CapturedPiece(it.module, torch.cuda.graph_pool_handle() if isolate else shared_pool, stream)
        for it in items
        if not it.is_split
    }
    phase = {"name": "warmup"}

    class Driver(torch.fx.Interpreter):
        def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
            piece = captured.get(str(target))
            if piece is None or phase["name"] == "warmup":
                return super().call_module(target, args, kwargs)
            if phase["name"] == "capture":
                return piece.capture(args)
            return piece.replay(args)

    driver = Driver(split_gm)
    with torch.no_grad():
        t0 = time.perf_counter()
        for _ in range(2):  # warm-up, as sglang runs each size before capturing it
            driver.run(*static_inputs)
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        phase["name"] = "capture"
        driver.run(*static_inputs)
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        phase["name"] = "replay"
        fresh = _fresh_args(ri.gm, ri.args, seed=1000 + ri.capture_size)
        for buf, new in zip(static_inputs, fresh):
            if isinstance(buf, torch.Tensor) and buf is not new:
                buf.copy_(new)
        # Reference: fp64 eager of the unsplit graph, and eager in the run dtype, on the same values.
        ref = _reference_fp64(ri.gm, static_inputs)
        eager = ri.gm(*_clone(static_inputs))
        rec = _PieceCompare(split_gm, captured)
        graph_out = rec.run(*static_inputs)
        torch.cuda.synchronize()
        t3 = time.perf_counter()
    try:
        timings = _time_pieces(split_gm, captured, static_inputs)
    except Exception:  # timing is a bonus; the comparison above is the result
        timings = {}
    pieces = []
    for it in items:
        p = captured.get(it.submod_name)
        cmp = rec.results.get(it.submod_name)
        eager_us, graph_us = timings.get(it.submod_name, (0.0, 0.0))
        if p is not None and p.error:
            pieces.append(PieceReplay(it.graph_id, False, "capture_failed", 0, 0, eager_us, 0, p.error))
            continue
        abs_e, rel_e, close = cmp if cmp else (0.0, 0.0, True)
        msg = ""
        if p is not None and p.stale_inputs:
            close = False
            msg = (
                f"{p.stale_inputs} input address(es) changed since capture: replaying would read freed memory "
                "(sglang's debug mode asserts here); make the producer write into a buffer allocated in a captured piece"
            )
        status = "ok" if close else "mismatch"
        pieces.append(PieceReplay(it.graph_id, it.is_split, status, abs_e, rel_e, eager_us, graph_us, msg))
    abs_e, rel_e, close = compare(graph_out, eager)
    r_c, r_e = rmse(graph_out, ref), rmse(eager, ref)
    ratio = r_c / r_e if r_e > 0 else (0.0 if r_c == 0 else math.inf)
    ok = close or r_c <= RMSE_MULTIPLIER * r_e + 1e-12
    status = "ok" if ok and all(p.status == "ok" for p in pieces) else _worst(
        ["mismatch" if not ok else "ok"] + [p.status for p in pieces]
    )
    return SizeReplay(
        ri.capture_size, ri.graph_index, status, tuple(pieces), abs_e, rel_e, round(ratio, 4),
        int(torch.cuda.max_memory_allocated()), "" if ok else "whole model differs from eager on fresh inputs",
        warmup_ms=round((t1 - t0) * 1e3, 3), capture_ms=round((t2 - t1) * 1e3, 3), check_ms=round((t3 - t2) * 1e3, 3),
    )


def _debug_sync(what: str) -> None:
    import os

    if os.environ.get("PCG_INSPECT_DEBUG_SYNC"):
        import torch

        torch.cuda.synchronize()
        print(f"pcg-replay: ok after {what}", flush=True)


class _PieceCompare:
    """Runs the replay; before each captured piece replays, runs it eagerly on the same inputs."""

    def __init__(self, split_gm: Any, captured: dict[str, _CapturedPiece]) -> None:
        import torch.fx

        self.results: dict[str, tuple[float, float, bool]] = {}
        self.inputs: dict[str, tuple[Any, ...]] = {}
        outer = self

        class Interp(torch.fx.Interpreter):
            def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
                name = str(target)
                piece = captured.get(name)
                outer.inputs[name] = _clone(tuple(args))
                if piece is None:
                    res = super().call_module(target, args, kwargs)
                    _debug_sync(f"split {name}")
                    return res
                expected = piece.module(*_clone(tuple(args)))
                _debug_sync(f"eager {name}")
                out = piece.replay(args)
                _debug_sync(f"replay {name}")
                outer.results[name] = compare(out, expected, uninitialised_outputs(piece.module))
                return out

        self.interp = Interp(split_gm)

    def run(self, *args: Any) -> Any:
        return self.interp.run(*args)


def _reference_fp64(gm: Any, args: Sequence[Any]) -> Any:
    import torch

    def up(x: Any) -> Any:
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            return x.detach().double()
        return _clone(x)

    try:
        return gm(*[up(a) for a in args])
    except Exception:  # an op without fp64 support (many custom kernels): fp32, then as-is
        try:
            return gm(*[x.float() if isinstance(x, torch.Tensor) and x.is_floating_point() else _clone(x) for x in args])
        except Exception:
            return gm(*_clone(list(args)))


def _time_pieces(split_gm: Any, captured: dict[str, _CapturedPiece], args: Sequence[Any]) -> dict[str, tuple[float, float]]:
    """Median eager and graph time per piece (µs, CUDA events), timing whole forwards in model order.

    A piece is never replayed alone: its graph may reuse, for buffers a later split op fills,
    memory of its own temporaries, so only the engine's order gives meaningful state.
    """
    import torch
    import torch.fx

    samples: dict[tuple[str, str], list[float]] = {}

    class Timed(torch.fx.Interpreter):
        def __init__(self, gm: Any, mode: str) -> None:
            super().__init__(gm)
            self.mode = mode
            self.events: list[tuple[str, Any, Any]] = []

        def call_module(self, target: Any, a: Any, kw: Any) -> Any:
            name = str(target)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            piece = captured.get(name)
            start.record()
            if self.mode == "graph" and piece is not None and piece.graph is not None:
                piece.graph.replay()
                out = piece.output
            else:
                out = super().call_module(target, a, kw)
            end.record()
            self.events.append((name, start, end))
            return out

    for mode in ("eager", "graph"):
        for i in range(TIMING_RUNS + 1):
            t = Timed(split_gm, mode)
            t.run(*args)
            torch.cuda.synchronize()
            if i == 0:
                continue  # warm-up
            for name, start, end in t.events:
                samples.setdefault((name, mode), []).append(start.elapsed_time(end) * 1000.0)
    out = {}
    for name in {n for n, _ in samples}:
        eager = sorted(samples.get((name, "eager"), [0.0]))
        graph = sorted(samples.get((name, "graph"), [0.0]))
        is_captured = name in captured and captured[name].graph is not None
        out[name] = (eager[len(eager) // 2], graph[len(graph) // 2] if is_captured else 0.0)
    return out


if __name__ == "__main__":
    import sys

    raise SystemExit(_worker_main(sys.argv[1:]))
