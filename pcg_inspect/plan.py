"""``pcg-inspect plan``: what the engine's whole capture schedule costs for the whole model, before a launch.

The schedule is sglang 0.5.23's (``schedule``: 42 prefill sizes up to 2048) unless ``--tokens`` says otherwise.
A model target is traced at a few depths (``--samples``: 1 and 2 layers by default) over a few sizes of the
schedule (``--sample-sizes``: 4), each sample in a supervised child like ``trace`` with what the engine pays and
not our checks (``TraceOptions.plan_sample``), and the whole model on the whole schedule is forecast (``forecast``):

- **compile**: Dynamo's trace and the backend's compile, per size (``SizeCompile``: the first call at a size minus
  a plain run) and in all, on a line in the layers, plus Dynamo's once-per-process setup (paid apart, before the
  compile is timed). A graph marked dynamic serves every size after the first.
- **graphs**, per backend judged (by default sglang's default for the phase and tc_piecewise): tc_piecewise
  captures its captured pieces at every size, breakable its segments, full one graph; and how many if identical
  ones (``Piece.structure``, ``Report.segments``) shared one graph per size.
- **weights**, on the same line.
- **GPU, the capture pass** (``replay.engine``: every sampled size captured as the engine does, one shared pool;
  the smallest and largest size replayed against eager first): the capture session's and the compile pass's time,
  proportional to the captured pieces at each sampled size and interpolated in tokens; the shared pool and the
  peak on a line in the layers; and whether the pool fits next to the weights at ``--mem-fraction-static``.

Validated on the H200 (``bench/plan_gpu.py``; README "Plan").
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Sequence

from .options import DEFAULT_SIZES, PlanOptions, TraceOptions
from .report import Plan, PlanGraphs, PlanSample, Report

GPU_NOTE = ("capture time, warm-up and graph-pool memory need a GPU capture (--device cuda): this plan forecasts "
            "compile, graph counts and weights only, and cannot say whether the pool fits next to the weights")

REPEATS = 3
"""Times a shallow sample's capture session runs (each size's median kept)."""

SAMPLE_SIZES = 4
"""Sizes of the schedule each sample traces by default: the smallest, the largest and two spread between."""


def schedule_of(options: TraceOptions, max_bs: int = 0) -> tuple[int, ...]:
    """The sizes a plan covers: ``--tokens`` when given (not the trace default), else the engine's schedule of the
    phase up to ``max_bs``."""
    from .schedule import engine_sizes

    if tuple(options.sizes) != DEFAULT_SIZES:
        return tuple(sorted(set(options.sizes)))
    return engine_sizes(options.phase, max_bs)


def sampled(schedule: Sequence[int], k: int) -> tuple[int, ...]:
    """``k`` sizes spread evenly over the schedule's positions, its smallest and largest included (0 or k >= its
    length: all of it)."""
    n = len(schedule)
    if k <= 0 or k >= n:
        return tuple(schedule)
    if k == 1:
        return (max(schedule),)
    return tuple(sorted({schedule[round(i * (n - 1) / (k - 1))] for i in range(k)}))


def layers_of(options: TraceOptions) -> int:
    """The model's layer count (config overrides applied); 0 for a file target."""
    from . import models

    if not models.is_model_spec(options.target):
        return 0
    config = models.apply_overrides(models.read_config(options.target), options.model.overrides)
    return int(config.get("num_hidden_layers") or 0)


def make_plan(options: TraceOptions, plan: PlanOptions = PlanOptions(), progress: Optional[Callable[[str], None]] = None,
              echo: Optional[Callable[[str], None]] = None) -> Report:
    """Trace the samples over sizes of the schedule and forecast the whole model on the whole schedule: the deepest
    sample's report, with ``plan``. Every backend judged is planned (by default sglang's default for the phase and
    tc_piecewise). ``plan.samples``: layer counts, (0,) for the whole model; ``plan.sample_sizes``: sizes of the
    schedule each sample traces (0: all). On a GPU each sample also captures its sizes as the engine does
    (``replay.engine``) and checks the smallest and largest against eager.

    Raises:
        UsageError: a sample deeper than the model.
    """
    from . import run as runner
    from .errors import UsageError

    plan.validate()
    schedule = schedule_of(options, plan.max_bs)
    sizes = sampled(schedule, plan.sample_sizes)
    total = layers_of(options)
    depths = sorted({total if d == 0 else d for d in plan.samples}) if total else [0]
    if total and depths[-1] > total:
        raise UsageError(f"--samples {depths[-1]}: {options.target} has {total} layers")
    backends = options.judged_backends
    gpu = options.device.startswith("cuda")
    reports: list[Report] = []
    for depth in depths:
        # what the engine pays, not our checks: on a GPU the engine's capture pass with checks at two sizes, on a CPU
        # no replay; the eager observation only for breakable's segments. The whole model's capture session runs
        # once, as the engine's; a shallow sample's three times.
        opts = dataclasses.replace(options, sizes=sizes, replay=gpu, plan_sample=1 if depth == total else REPEATS,
                                   observe_ops="breakable" in backends, backends=backends,
                                   model=_depth(options, depth))
        what = f"{depth} layer(s)" if depth else "the target"
        say = (lambda msg, what=what: progress(f"{what}: {msg}")) if progress else None
        if progress:
            progress(f"{what}: tracing {len(sizes)} of {len(schedule)} sizes")
        reports.append(runner.trace(opts, progress=say, echo=echo))
    measured = tuple(_sample(depth, r) for depth, r in zip(depths, reports))
    return dataclasses.replace(reports[-1], plan=forecast(options, schedule, total, measured, reports[-1],
                                                          plan.mem_fraction_static))


def _depth(options: TraceOptions, depth: int) -> Any:
    """The model options of a sample ``depth`` layers deep: the whole model with that many layers, or under
    --nproc (which traces decoder layers only) the first ``depth`` decoder layers."""
    if not depth:
        return options.model
    if options.nproc > 1:
        return dataclasses.replace(options.model, layers="0" if depth == 1 else f"0-{depth - 1}", num_layers=0)
    return dataclasses.replace(options.model, num_layers=depth)


def _sample(depth: int, report: Report) -> PlanSample:
    captured = sum(1 for p in report.pieces if not p.is_split)
    return PlanSample(depth, round(sum(c.compile_s for c in report.compile_sizes), 4), len(report.graphs), captured,
                      report.summary.num_distinct_pieces, float(report.timings_s.get("trace_s", 0.0)),
                      report.environment.weight_bytes, len(report.segments), len(set(report.segments)),
                      tuple(sorted(c.size for c in report.compile_sizes)), report.capture_pass,
                      float(report.timings_s.get("compiler_setup_s", 0.0)))


def forecast(options: TraceOptions, schedule: tuple[int, ...], total: int, samples: Sequence[PlanSample],
             last: Report, mem_fraction_static: float = 0.0) -> Plan:
    """The whole model on the whole schedule from the samples (a pure function of them): compile seconds, captured
    pieces, segments and weights each on a straight line in the layer count (least squares through every sample),
    distinct pieces as the deepest sample has them, and on a GPU the capture pass (``_gpu_forecast``)."""
    deepest = samples[-1]
    line = total and len({s.layers for s in samples}) >= 2

    def at_total(values: Sequence[float]) -> float:
        if not line:
            return values[-1]
        a, b = _line([(s.layers, v) for s, v in zip(samples, values)])
        return a + b * total

    compile_s = max(0.0, at_total([s.compile_s for s in samples])) + deepest.compiler_setup_s
    unresolved = False
    if line:
        a, b = _line([(s.layers, s.compile_s) for s in samples])
        unresolved = b <= 0
        if unresolved:  # no per-layer cost seen: the deepest sample's compile is all that is known
            compile_s = deepest.compile_s + deepest.compiler_setup_s
        fit = (f"compile_s = {deepest.compiler_setup_s:.2f} (Dynamo's setup, once) + {a:.3f} + {b:.3f} x layers; "
               f"pieces, segments, weights, pool and peak likewise on a line (least squares through "
               f"{', '.join(str(s.layers) for s in samples)} layers), at {total} layers; capture time in proportion "
               f"to the captured pieces")
    else:
        fit = ("one sample: the target as traced" if not total else
               f"one depth sampled ({deepest.layers} layers): no line to draw; the sample's own numbers")
    n = len(schedule)
    pieces = max(deepest.captured_pieces, round(at_total([s.captured_pieces for s in samples])))
    graphs = []
    for backend in options.judged_backends:
        if backend == "tc_piecewise":
            per, shared = pieces, deepest.distinct_pieces
        elif backend == "breakable":
            per, shared = max(deepest.segments, round(at_total([s.segments for s in samples]))), deepest.distinct_segments
        else:
            per, shared = 1, 1
        graphs.append(PlanGraphs(backend, per, shared, per * n, shared * n))
    sizes = deepest.sizes or tuple(sorted(c.size for c in last.compile_sizes))
    notes = []
    if tuple(sizes) != tuple(schedule):
        notes.append(f"{len(sizes)} of the {n} sizes traced ({', '.join(map(str, sizes))}); the others are assumed to "
                     f"reuse the graphs compiled (a dynamic token dim) and their capture cost is interpolated in tokens")
    if unresolved:
        notes.append(f"compile: the {deepest.layers}-layer sample compiled no slower than the shallower one "
                     f"(Dynamo's per-layer cost is within timing noise at this depth), so the compile forecast is a "
                     f"lower bound; a deeper sample (--samples 1,8) measures it")
    if options.nproc > 1 and total:
        notes.append(f"--nproc {options.nproc}: the samples are decoder layers only (tensor parallel traces no "
                     f"embeddings): the weights and memory are per GPU, without the embeddings and the final norm")
    recompiled = [c.size for c in last.compile_sizes if c.graphs_compiled and c.size != max(sizes)]
    if recompiled:
        notes.append(f"graphs compiled again at {', '.join(map(str, recompiled))} tokens (a recompile: see the "
                     f"trace's recompiles)")
    weights = max(deepest.weight_bytes, round(at_total([float(s.weight_bytes) for s in samples])))
    gpu = _gpu_forecast(schedule, samples, at_total, pieces, weights, last, mem_fraction_static, notes)
    if not gpu and options.device.startswith("cuda"):
        why = next((w for w in last.warnings if w.startswith("replay skipped")), "no graph was captured")
        notes.insert(0, f"the capture pass did not run ({why}): capture time and graph memory are not forecast")
    elif not gpu:
        notes.insert(0, GPU_NOTE)
    return Plan(options.phase, tuple(options.judged_backends), schedule, total, tuple(samples), last.compile_sizes,
                weights, round(compile_s, 3), tuple(graphs), fit, tuple(notes), sampled_sizes=tuple(sizes), **gpu)


def _gpu_forecast(schedule: tuple[int, ...], samples: Sequence[PlanSample], at_total: Callable[[Sequence[float]], float],
                  pieces: int, weights: int, last: Report, mem_fraction_static: float, notes: list[str]) -> dict:
    """The capture pass's cost for the whole model over the schedule (tc_piecewise): {} without a capture pass.

    Time: at each sampled size, the capture session and the compile pass's forward are proportional to the captured
    pieces (each is warmed up, captured and instantiated, a split op between two), a line through the origin fitted
    to the samples (least squares): a line with an intercept, through two shallow samples, turns a millisecond of
    noise into seconds. Between the sampled sizes the milliseconds are interpolated in tokens, then summed over the
    schedule. Memory: the pool is shared by every size, captured largest first, and a smaller size reuses what the
    larger ones freed, so the pool after the whole schedule is taken as the pool after the sampled sizes (which span
    it), on a line in the layer count like the pass's peak above the weights.
    """
    if not all(s.captures for s in samples):
        return {}
    failed = [c for c in samples[-1].captures if c.status != "ok"]
    if failed:
        notes.append(f"the capture pass failed at {', '.join(str(c.size) for c in failed)} tokens "
                     f"({failed[0].message}): the cost below counts the sizes that captured")
    def per_size(key: str) -> dict[int, float]:
        out = {}
        for size in sorted({c.size for c in samples[-1].captures}):
            points = [(c.graphs, getattr(c, key)) for s in samples for c in s.captures if c.size == size and c.graphs]
            square = sum(p * p for p, _ in points)
            out[size] = sum(p * v for p, v in points) / square * pieces if square else 0.0
        return out

    def over_schedule(points: dict[int, float]) -> float:
        return sum(_interpolate(points, t) for t in schedule) if points else 0.0

    warmup_s = over_schedule(per_size("warmup_ms")) / 1e3
    capture_s = over_schedule(per_size("capture_ms")) / 1e3
    pool = round(max(0.0, at_total([float(s.pool_bytes) for s in samples])))
    peak = weights + round(max(0.0, at_total([float(max((c.peak_extra_bytes for c in s.captures), default=0))
                                              for s in samples])))
    gpu_bytes = last.environment.gpu_bytes
    out = dict(forecast_warmup_s=round(warmup_s, 3), forecast_capture_s=round(capture_s, 3), forecast_pool_bytes=pool,
               forecast_peak_bytes=peak, checked_sizes=tuple(sorted(s.capture_size for s in last.replay.sizes))
               if last.replay else (), gpu_bytes=gpu_bytes)
    if gpu_bytes:
        from .schedule import default_mem_fraction_static

        fraction = mem_fraction_static or default_mem_fraction_static(gpu_bytes, last.environment.world_size,
                                                                      len(schedule))
        reserve, static = (1 - fraction) * gpu_bytes, fraction * gpu_bytes
        fits = pool <= reserve and weights <= static
        how = "--mem-fraction-static" if mem_fraction_static else "sglang's default --mem-fraction-static for this GPU"
        out.update(mem_fraction_static=fraction, fits=fits, memory_fit=(
            f"{'fits' if fits else 'does not fit'}: the pool ({_gib(pool)}) in the {_gib(reserve)} sglang leaves "
            f"for activations and CUDA graphs at {how} {fraction:.3f} of {_gib(gpu_bytes)}, which it shares with "
            f"the prefill activations; the weights ({_gib(weights)} per GPU) in the static {_gib(static)}"
            + (f", leaving {_gib(static - weights)} for the KV cache" if weights <= static else "")))
    return out


def _interpolate(points: dict[int, float], x: int) -> float:
    """Piecewise-linear through ``points`` (tokens -> value); the nearest end's value outside them."""
    xs = sorted(points)
    if x <= xs[0]:
        return points[xs[0]]
    if x >= xs[-1]:
        return points[xs[-1]]
    hi = next(i for i, v in enumerate(xs) if v >= x)
    x0, x1 = xs[hi - 1], xs[hi]
    return points[x0] + (points[x1] - points[x0]) * (x - x0) / (x1 - x0)


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def _line(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares intercept and slope."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0
    return my - slope * mx, slope
