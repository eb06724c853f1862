"""``pcg-inspect plan``: what the engine's whole capture schedule costs for the whole model, before a launch.

The schedule is sglang 0.5.23's (``schedule``: 42 prefill sizes up to 2048) unless ``--tokens`` says otherwise.
A model target is traced over the whole schedule at a few depths (``--samples``: 1 and 2 layers by default), each
sample in a supervised child like ``trace`` (no observation, no replay: what the engine pays, not our checks), and
the whole model is forecast from a straight line through the samples:

- **compile**: Dynamo's trace and the backend's compile, per size (``SizeCompile``: the first call at a size minus
  a plain run) and in all. A graph marked dynamic serves every size after the first, so compile is paid once per
  graph; it grows with the layers Dynamo unrolls.
- **graphs**, per backend judged (by default sglang's default for the phase and tc_piecewise): tc_piecewise
  captures its captured pieces at every size, breakable its segments (one more than the break-point calls), full
  one graph; and how many if identical ones (the repeated layers: ``Piece.structure``, ``Report.segments``) shared
  one graph per size, as sglang's breakable dedups identical segment executables.

Capture time, warm-up and graph-pool memory per size need a GPU and are not measured by this version (issue #24:
they are validated on the H200 first); the plan says so.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

from .options import DEFAULT_SIZES, TraceOptions
from .report import Plan, PlanGraphs, PlanSample, Report

GPU_NOTE = ("capture time, warm-up and graph-pool memory per size need a GPU capture and are not measured by this "
            "version of plan (compile, graph counts and weights only), so whether the pool fits next to the weights "
            "at a --mem-fraction-static is not said yet")


def schedule_of(options: TraceOptions, max_bs: int = 0) -> tuple[int, ...]:
    """The sizes a plan covers: ``--tokens`` when given (not the trace default), else the engine's schedule of the
    phase up to ``max_bs``."""
    from .schedule import engine_sizes

    if tuple(options.sizes) != DEFAULT_SIZES:
        return tuple(options.sizes)
    return engine_sizes(options.phase, max_bs)


def layers_of(options: TraceOptions) -> int:
    """The model's layer count (config overrides applied); 0 for a file target."""
    from . import models

    if not models.is_model_spec(options.target):
        return 0
    config = models.apply_overrides(models.read_config(options.target), options.model.overrides)
    return int(config.get("num_hidden_layers") or 0)


def make_plan(options: TraceOptions, samples: Sequence[int] = (1, 2), max_bs: int = 0,
              progress: Optional[Callable[[str], None]] = None, echo: Optional[Callable[[str], None]] = None) -> Report:
    """Trace the samples over the schedule and forecast the whole model: the deepest sample's report, with ``plan``.
    Every backend judged is planned (by default sglang's default for the phase and tc_piecewise).

    Raises:
        UsageError: a sample deeper than the model, or no sample.
    """
    from . import run as runner
    from .errors import UsageError

    schedule = schedule_of(options, max_bs)
    total = layers_of(options)
    depths = sorted(set(samples)) if total else [0]
    if not depths or depths[0] < (1 if total else 0):
        raise UsageError("--samples needs layer counts of 1 or more")
    if total and depths[-1] > total:
        raise UsageError(f"--samples {depths[-1]}: {options.target} has {total} layers")
    backends = options.judged_backends
    reports: list[Report] = []
    for depth in depths:
        # what the engine pays, not our checks: no replay; the eager observation only for breakable's segments
        opts = dataclasses.replace(options, sizes=schedule, replay=False, observe_ops="breakable" in backends,
                                   backends=backends,
                                   model=dataclasses.replace(options.model, num_layers=depth) if depth else options.model)
        if progress:
            progress(f"tracing {depth or 'the'} layer(s) over {len(schedule)} sizes")
        reports.append(runner.trace(opts, progress=progress, echo=echo))
    measured = tuple(_sample(depth, r) for depth, r in zip(depths, reports))
    plan = forecast(options, schedule, total, measured, reports[-1])
    return dataclasses.replace(reports[-1], plan=plan)


def _sample(depth: int, report: Report) -> PlanSample:
    captured = sum(1 for p in report.pieces if not p.is_split)
    return PlanSample(depth, round(sum(c.compile_s for c in report.compile_sizes), 4), len(report.graphs), captured,
                      report.summary.num_distinct_pieces, float(report.timings_s.get("trace_s", 0.0)),
                      report.environment.weight_bytes, len(report.segments), len(set(report.segments)))


def forecast(options: TraceOptions, schedule: tuple[int, ...], total: int, samples: Sequence[PlanSample],
             last: Report) -> Plan:
    """The whole model from the samples: compile seconds, captured pieces and segments each on a straight line in
    the layer count (least squares through every sample); distinct ones as the deepest sample has them."""
    deepest = samples[-1]
    line = total and len({s.layers for s in samples}) >= 2

    def at_total(values: Sequence[float]) -> float:
        if not line:
            return values[-1]
        a, b = _line([(s.layers, v) for s, v in zip(samples, values)])
        return a + b * total

    compile_s = max(0.0, at_total([s.compile_s for s in samples]))
    if line:
        a, b = _line([(s.layers, s.compile_s) for s in samples])
        fit = (f"compile_s = {a:.3f} + {b:.3f} x layers, pieces and segments likewise (least squares through "
               f"{', '.join(str(s.layers) for s in samples)} layers), at {total} layers")
    else:
        fit = ("one sample: the target as traced" if not total else
               f"one depth sampled ({deepest.layers} layers): no line to draw; the sample's own numbers")
    n = len(schedule)
    graphs = []
    for backend in options.judged_backends:
        if backend == "tc_piecewise":
            per, shared = max(deepest.captured_pieces, round(at_total([s.captured_pieces for s in samples]))), deepest.distinct_pieces
        elif backend == "breakable":
            per, shared = max(deepest.segments, round(at_total([s.segments for s in samples]))), deepest.distinct_segments
        else:
            per, shared = 1, 1
        graphs.append(PlanGraphs(backend, per, shared, per * n, shared * n))
    notes = [GPU_NOTE]
    recompiled = [c.size for c in last.compile_sizes if c.graphs_compiled and c.size != max(schedule)]
    if recompiled:
        notes.append(f"graphs compiled again at {', '.join(map(str, recompiled))} tokens (a recompile: see the "
                     f"trace's recompiles)")
    weights = max(deepest.weight_bytes, round(at_total([float(s.weight_bytes) for s in samples])))
    return Plan(options.phase, tuple(options.judged_backends), schedule, total, tuple(samples), last.compile_sizes,
                weights, round(compile_s, 3), tuple(graphs), fit, tuple(notes))


def _line(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares intercept and slope."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0
    return my - slope * mx, slope


def samples_of(text: str) -> tuple[int, ...]:
    """'1,2,4' -> (1, 2, 4)."""
    from .errors import UsageError

    try:
        out = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"--samples expects layer counts separated by commas, got {text!r}") from None
    if not out or min(out) < 1:
        raise UsageError(f"--samples expects layer counts of 1 or more, got {text!r}")
    return out
