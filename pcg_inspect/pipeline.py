"""The pipeline: load -> trace -> analyze -> split -> replay -> Report, in the process it is called in.

It knows nothing of processes: ``run`` decides where it runs (a supervised child, each rank, or this
process for the API's live objects) and owns every child. Stages are called in order and hand records down.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

from .breakpoints import resolve_break_ops
from .deadline import shielded
from .errors import TraceTimeout, UsageError
from .options import RunContext, TraceOptions
from .report import SCHEMA_VERSION, Environment, Finding, Report, SizeCompile, build_summary

Progress = Callable[[str], None]
Checkpoint = Callable[[Report], None]


@dataclass
class PipelineRun:
    """A finished run: the report plus the live objects a caller in this process may reuse."""

    report: Report
    target: Any = None
    """``load.Target`` (module and inputs), None when loading timed out."""
    trace: Any = None
    """``trace.TraceResult`` (captured GraphModules), None when tracing did not finish."""


@dataclass
class _State:
    """What the stages produced so far (a timeout reports whatever is here)."""

    options: TraceOptions
    context: RunContext
    stage: str = "import"
    timings: dict[str, float] = field(default_factory=dict)
    target: Any = None
    result: Any = None
    analysis: Any = None
    cut: Any = None
    split_ops: tuple[str, ...] = ()
    break_ops: tuple[str, ...] = ()
    """breakable's break ops (``breakpoints.resolve_break_ops``)."""
    sglang_version: str = ""
    warnings: list[str] = field(default_factory=list)
    replay: Any = None
    replay_findings: tuple[Finding, ...] = ()
    backend_replays: tuple[Any, ...] = ()
    """Replays of the breakable / full captures asked for (GPU)."""
    capture_pass: tuple[Any, ...] = ()
    """A plan sample's capture pass over every size (GPU): ``SizeCapture`` records."""
    torch_version: str = ""
    target_object: Any = None
    on_stage: Optional[Callable[[str], None]] = None


def run(
    options: TraceOptions,
    context: RunContext = RunContext(),
    progress: Optional[Progress] = None,
    checkpoint: Optional[Checkpoint] = None,
    target_object: Any = None,
    on_stage: Optional[Callable[[str], None]] = None,
) -> PipelineRun:
    """Run every stage for one target in this process.

    Args:
        options: what to do (validated by the caller).
        context: this process's rank (set by the launcher for --nproc).
        progress: called with a short line per step.
        checkpoint: called with the report before replay starts (a worker saves it, so a crash in
            replay still leaves the trace's findings).
        target_object: an in-memory target (the Python API): ``(object, args, kwargs)`` instead of
            ``options.target``, which then only names it.
        on_stage: called with each stage's name as it starts (a child tells its supervisor).
    Returns:
        PipelineRun. A ``TraceTimeout`` raised into this process ends the stage it hits, and the
        report holds what finished plus a ``timeout`` finding; a ``SystemExit`` from the target
        likewise ends it with a ``target_exit`` finding.
    Raises:
        UsageError, TargetError: bad options or a target that cannot be loaded.
    """
    state = _State(options, context, target_object=target_object, on_stage=on_stage)
    say = progress or (lambda _msg: None)
    try:
        _run_stages(state, say, checkpoint)
    except TraceTimeout as exc:
        exc.settle()
        return PipelineRun(_report(state, extra=(_timeout_finding(state, exc),)), state.target, state.result)
    except SystemExit as exc:
        return PipelineRun(_report(state, extra=(_exit_finding(state, exc),)), state.target, state.result)
    return PipelineRun(_report(state), state.target, state.result)


def _run_stages(state: _State, say: Progress, checkpoint: Optional[Checkpoint]) -> None:
    options = state.options
    with _stage(state, "import"):
        say("importing torch")
        with shielded():  # an import is never interrupted: the timeout is raised when it ends
            import torch

            from . import _torch_compat, analyze, load, trace
            from . import split as split_stage

            _torch_compat.import_compiler()
        state.torch_version = torch.__version__
        _check_device(options, torch)
    if options.plan_sample:  # a plan times the target's compile: Dynamo's once-per-process setup is counted apart
        with _stage(state, "compiler_setup"):
            _torch_compat.warm_compiler(options.device)

    with _stage(state, "load"):
        what = "loading" if state.target_object is not None or ":" in options.target else "building weights for"
        say(f"{what} {options.target} on {options.device} ({options.dtype or 'as built'})")
        if state.target_object is not None:
            obj, args, kwargs = state.target_object
            state.target = load.load_object(obj, args, kwargs, options.sizes, options.device, options.torch_dtype_name)
        else:
            state.target = load.load(options.target, options.sizes, options.device, options.torch_dtype_name,
                                     options.model, state.context.rank, state.context.world_size)
    ops, state.sglang_version, warnings = split_stage.resolve_split_ops(
        options.split_ops, state.target.split_ops, options.sglang_split_ops)
    state.split_ops, state.warnings = tuple(ops), list(warnings)
    state.break_ops = resolve_break_ops(tuple(options.break_ops) + tuple(state.target.break_ops))
    if state.target.fixed_inputs:
        state.warnings.append(f"the factory takes no `tokens`: traced, observed and replayed at its inputs' own size "
                              f"({state.target.calls[0].tokens} tokens); give it a `tokens` parameter to check every capture size")
    with _stage(state, "trace"):
        state.result = trace.trace_target(state.target, options.dynamic, on_progress=say, record_inputs=options.replay)
    with _stage(state, "analyze"):
        say("analyzing")
        state.analysis = analyze.analyze(state.result, state.target, observe_ops=options.observe_ops,
                                         break_ops=state.break_ops, backends=options.judged_backends)
    with _stage(state, "split"):
        state.cut = split_stage.split(state.result.graphs, state.split_ops, state.target.roots)
        state.analysis = analyze.with_piece_findings(state.analysis, state.result, state.cut, state.target, options.judged_backends)
    if options.replay:
        _replay_stages(state, say, checkpoint)


def _replay_stages(state: _State, say: Progress, checkpoint: Optional[Checkpoint]) -> None:
    """tc_piecewise's replay, the other backends' (GPU), and a plan sample's capture pass (GPU)."""
    options = state.options
    if checkpoint is not None:
        checkpoint(_report(state))
    with _stage(state, "replay"):
        outcome = _replay(state, say)
    if outcome is not None:
        state.replay = outcome.replay
        state.replay_findings = outcome.findings
    if not options.device.startswith("cuda"):
        return
    for backend in (b for b in options.judged_backends if b != "tc_piecewise"):
        with _stage(state, f"replay:{backend}"):
            _replay_backend(state, backend, say)
    if options.plan_sample and outcome is not None:
        with _stage(state, "capture_pass"):
            from .replay.engine import capture_schedule

            # the trace ran the compiled forward at every size: that was the engine's compile pass
            forwards = {size: last * 1e3 for size, (_, last, _) in state.result.size_times.items()}
            state.capture_pass = capture_schedule(_replay_inputs(state), state.split_ops, forwards, on_progress=say,
                                                  repeats=options.plan_sample)


@contextlib.contextmanager
def _stage(state: _State, name: str) -> Iterator[None]:
    state.stage = name
    if state.on_stage is not None:
        state.on_stage(name)
    t0 = time.perf_counter()
    try:
        yield
    finally:
        state.timings[f"{name}_s"] = round(time.perf_counter() - t0, 4)


def _check_device(options: TraceOptions, torch: Any) -> None:
    if options.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but torch.cuda.is_available() is False on this machine")
    if options.device.startswith("cuda:") and int(options.device.split(":")[1]) >= torch.cuda.device_count():
        raise UsageError(f"--device {options.device}: this machine has {torch.cuda.device_count()} GPU(s)")


def _replay(state: _State, say: Progress) -> Any:
    from .replay import replay_pieces

    if state.analysis.graph_breaks:
        state.warnings.append("replay skipped: the target has graph breaks, so PCG would not capture it; fix them first")
        return None
    inputs = _replay_inputs(state)
    if not inputs:
        state.warnings.append("replay skipped: no graph was captured")
        return None
    checked = _checked_sizes(state)
    if checked is not None:
        inputs = [ri for ri in inputs if ri.capture_size in checked]
    functions = {g.index: g.function for g in state.cut.graphs}
    return replay_pieces(inputs, state.split_ops, state.options.device,
                         state.options.isolate, on_progress=say, roots=state.target.roots, functions=functions,
                         bisect=state.context.bisect, timings=not state.options.plan_sample)


def _replay_inputs(state: _State) -> list[Any]:
    """Every (size, graph) the trace recorded, largest size first, as the engine captures."""
    from .replay import ReplayInput

    inputs = [ReplayInput(size, g.index, g.gm, args) for g in state.result.graphs for size, args in g.recorded.items()]
    return sorted(inputs, key=lambda ri: -ri.capture_size)


def _checked_sizes(state: _State) -> Optional[frozenset[int]]:
    """The sizes replayed against eager, None for every one: with the engine's capture pass (``plan`` on a GPU) the
    smallest and the largest (the pass captures the rest without checks)."""
    sizes = {c.tokens for c in state.target.calls if c.tokens is not None}
    if state.options.plan_sample and state.options.device.startswith("cuda") and sizes:
        return frozenset({min(sizes), max(sizes)})
    return None


def _replay_backend(state: _State, backend: str, say: Progress) -> None:
    """sglang's breakable or full backend: the module's own forward captured per size (``replay.plain``)."""
    from .replay.common import worst_status
    from .replay.plain import outcome_findings, replay_backend
    from .report import Replay

    outcome = replay_backend(state.target, backend, state.break_ops, state.target.roots, on_progress=say,
                             sizes=_checked_sizes(state))
    note = {"full": "the whole forward captured as one CUDA graph per size (sglang's full backend: two eager warm-ups, "
                    "one capture stream, one shared pool); replayed with fresh inputs against eager",
            "breakable": "the forward captured as segments cut at the break points (@eager_on_graph functions, break "
                         "ops), each break run eagerly and replayed with "
                         "its capture-time arguments (sglang's breakable backend: two warm-ups, one capture stream, one "
                         "shared pool); replayed with fresh inputs against eager"}[backend]
    replay = Replay(state.options.device, backend, worst_status(s.status for s in outcome.sizes), tuple(outcome.sizes), note)
    state.backend_replays += (replay,)
    state.replay_findings += tuple(outcome_findings(outcome, backend, state.split_ops, state.break_ops,
                                                    state.analysis.findings if state.analysis else ()))


def _report(state: _State, extra: tuple[Finding, ...] = ()) -> Report:
    a, cut, options = state.analysis, state.cut, state.options
    findings = (a.findings if a else ()) + state.replay_findings + extra
    target = state.target
    sizes = tuple(c.tokens for c in target.calls if c.tokens is not None) if target else options.sizes
    env = Environment.of_run(
        options, torch_version=state.torch_version, device=_device_name(options.device), capture_sizes=sizes,
        sglang_version=state.sglang_version, world_size=state.context.world_size, rank=state.context.rank,
        weight_bytes=_weight_bytes(target.module) if target is not None else 0,
        gpu_bytes=_gpu_bytes(options.device) if state.torch_version else 0,
    )
    breaks, graphs, pieces = (a.graph_breaks if a else ()), (cut.graphs if cut else ()), (cut.pieces if cut else ())
    recompiles = a.recompiles if a else ()
    if target is not None and target.entry[0]:  # never point a user at pcg-inspect's own wrapper
        findings, recompiles = _at_entry(findings, target.entry), _at_entry(recompiles, target.entry)
    return Report(
        schema_version=SCHEMA_VERSION, environment=env,
        summary=build_summary(graphs, breaks, findings, pieces, recompiles, state.replay, options.judged_backends,
                              state.backend_replays, options.default_backend),
        graph_breaks=breaks, findings=findings, graphs=graphs, guards=a.guards if a else (), recompiles=recompiles,
        split_ops=state.split_ops, pieces=pieces, replay=state.replay, warnings=tuple(state.warnings),
        timings_s=dict(state.timings), backend_replays=state.backend_replays,
        compile_sizes=tuple(SizeCompile(size, round(first, 4), round(last, 4), n) for size, (first, last, n)
                            in (state.result.size_times.items() if state.result else ())),
        segments=tuple(a.observation.segments) if a and a.observation and "breakable" in options.judged_backends else (),
        capture_pass=state.capture_pass,
    )


def _at_entry(records: Any, entry: tuple[str, int, str]) -> tuple[Any, ...]:
    """Records located in pcg-inspect's own files (a model target's wrapper forward) moved to the user's entry: the
    first forward of the user's code (for a model, the decoder layer in its modeling file)."""
    import dataclasses

    from .frames import own_file, source_line

    file, line, function = entry
    out = []
    for r in records:
        if getattr(r, "file", "") and own_file(r.file):
            extra = {"code": source_line(file, line)} if hasattr(r, "code") else {}
            r = dataclasses.replace(r, file=file, line=line, function=function, **extra)
        out.append(r)
    return tuple(out)


def _roots(state: _State) -> tuple[str, ...]:
    from .frames import spec_roots

    return state.target.roots if state.target is not None else spec_roots(state.options.target)


def _timeout_finding(state: _State, exc: TraceTimeout) -> Finding:
    from .stops import timeout_finding

    seen = list(exc.stack) or traceback.extract_tb(exc.__traceback__)  # the stack when time ran out
    frames = [(f.filename, int(f.lineno or 0), f.name) for f in seen]
    return timeout_finding(state.options.timeout, state.stage, frames, _roots(state))


def _exit_finding(state: _State, exc: SystemExit) -> Finding:
    from .stops import target_exit_finding

    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    frames = [(f.filename, int(f.lineno or 0), f.name) for f in traceback.extract_tb(exc.__traceback__)]
    return target_exit_finding(f"sys.exit({exc.code!r})", code, state.stage, frames, _roots(state))


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return "cpu"


def _gpu_bytes(device: str) -> int:
    if not device.startswith("cuda"):
        return 0
    import torch

    try:
        return int(torch.cuda.get_device_properties(torch.device(device)).total_memory)
    except Exception:  # no CUDA after all: the device check says so
        return 0


def _weight_bytes(module: Any) -> int:
    """Parameters and buffers of a module, in bytes (each storage once)."""
    seen: dict[int, int] = {}
    for t in list(module.parameters()) + list(module.buffers()):
        try:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        except Exception:  # a meta or sparse tensor: count its elements
            seen[id(t)] = t.numel() * t.element_size()
    return sum(seen.values())
