"""The pipeline: load -> trace -> analyze -> split -> replay -> Report. The CLI calls only this."""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from . import __version__
from .errors import UsageError
from .report import SCHEMA_VERSION, Environment, Graph, Report, Summary, count_findings

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TraceOptions:
    """What ``pcg-inspect trace`` was asked to do."""

    target: str
    capture_sizes: tuple[int, ...] = (1, 8, 64)
    split_ops: tuple[str, ...] = ()
    device: str = "cpu"
    dtype: Optional[str] = None
    dynamic: str = "maybe"
    replay: bool = True
    isolate: bool = False
    use_sglang_split_ops: bool = True
    command: str = ""
    replay_subprocess: bool = True
    """GPU replay runs in a child process: a CUDA error there cannot poison this one."""
    observe_ops: bool = True
    """Run the target eagerly once more per size to check its custom ops (the op findings)."""
    layers: str = "0"
    """Model targets: decoder layers to build ('0', '0-3')."""
    num_layers: int = 0
    """Model targets: > 0 builds the whole model with that many layers."""
    attn: str = "split"
    """Model targets: split (pcg_inspect::attention split op) | sdpa | eager."""
    overrides: tuple[str, ...] = ()
    """Model targets: key=value config overrides."""
    nproc: int = 1
    """Ranks to launch over torch.distributed (tensor parallel)."""
    rank: int = 0
    """Inside a rank: its rank (set by the launcher)."""
    world_size: int = 1
    """Inside a rank: the number of ranks (set by the launcher)."""


@dataclass
class TraceRun:
    """A finished run: the report plus the live objects later stages may reuse."""

    report: Report
    target: Any = None
    trace: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def run_trace(options: TraceOptions, progress: Optional[Progress] = None) -> TraceRun:
    """Run the whole pipeline for one target.

    Raises:
        UsageError: bad options (CUDA without a GPU, unknown split op).
        TargetError: the target could not be loaded.
    """
    say = progress or (lambda _msg: None)
    timings: dict[str, float] = {}
    if options.dynamic not in ("maybe", "unbacked", "static"):
        raise UsageError(f"--dynamic must be maybe, unbacked or static, got {options.dynamic!r}")

    if options.nproc > 1:
        from .tp import run_ranks

        return TraceRun(run_ranks(options, say))
    t0 = time.perf_counter()
    say("importing torch")
    import torch

    from . import analyze as analyze_stage
    from . import load as load_stage
    from . import split as split_stage
    from . import trace as trace_stage

    if options.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but torch.cuda.is_available() is False on this machine")
    if options.device != "cpu" and not options.device.startswith("cuda"):
        raise UsageError(f"--device must be cpu or cuda, got {options.device!r}")
    timings["import_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    say(f"loading {options.target}")
    from .models import ModelOptions

    model_opts = ModelOptions(options.layers, options.num_layers, options.attn, tuple(options.overrides))
    target = load_stage.load(
        options.target, options.capture_sizes, options.device, options.dtype, model_opts,
        rank=options.rank, world_size=options.world_size,
    )
    timings["load_s"] = time.perf_counter() - t

    split_ops, sglang_version, warnings = resolve_split_ops(
        options.split_ops + target.split_ops, options.use_sglang_split_ops
    )

    t = time.perf_counter()
    result = trace_stage.trace(target, options.dynamic, on_progress=say, record_inputs=options.replay)
    timings["trace_s"] = time.perf_counter() - t

    t = time.perf_counter()
    say("analyzing")
    analysis = analyze_stage.analyze(result, target, observe_ops=options.observe_ops)
    timings["analyze_s"] = time.perf_counter() - t

    t = time.perf_counter()
    graphs, pieces = [], []
    split_findings: dict[tuple, Any] = {}
    for g in result.graphs:
        ps, nodes = split_stage.describe(g.gm, g.index, split_ops)
        pieces.extend(ps)
        graphs.append(_graph_record(g, nodes))
        for node, piece in split_stage.fresh_split_outputs(g.gm, split_ops):
            f = _split_output_finding(node, piece, target.roots)
            split_findings.setdefault((f.op, f.file, f.line), f)
    timings["split_s"] = time.perf_counter() - t
    if split_findings:
        import dataclasses

        analysis = dataclasses.replace(analysis, findings=analysis.findings + tuple(split_findings.values()))

    replay_record = None
    if options.replay:
        t = time.perf_counter()
        replay_record, note = _run_replay(result, split_ops, options, analysis.graph_breaks, say)
        if note:
            warnings.append(note)
        timings["replay_s"] = time.perf_counter() - t

    sizes = tuple(c.tokens for c in target.calls if c.tokens is not None)
    env = Environment(
        tool_version=__version__,
        torch_version=torch.__version__,
        python_version=platform.python_version(),
        platform=f"{platform.system()} {platform.machine()}",
        device=_device_name(options.device),
        dtype=options.dtype or "as built",
        command=options.command,
        target=options.target,
        capture_sizes=sizes,
        dynamic=options.dynamic,
        sglang_version=sglang_version,
        world_size=options.world_size,
        rank=options.rank,
    )
    report = Report(
        schema_version=SCHEMA_VERSION,
        environment=env,
        summary=_summary(graphs, analysis.graph_breaks, analysis.findings, pieces, analysis.recompiles),
        graph_breaks=analysis.graph_breaks,
        findings=analysis.findings,
        graphs=tuple(graphs),
        guards=analysis.guards,
        recompiles=analysis.recompiles,
        split_ops=tuple(split_ops),
        pieces=tuple(pieces),
        replay=replay_record,
        warnings=tuple(warnings),
        timings_s={k: round(v, 4) for k, v in timings.items()},
    )
    if replay_record is not None:
        report = with_summary(report)
    return TraceRun(report, target, result)


def _split_output_finding(node: Any, piece: int, roots: Sequence[str]) -> Any:
    from .analyze.frames import is_user_file, source_line
    from .report import Finding
    from .split import target_key

    file, line = _user_location(node, roots, is_user_file)
    op = target_key(node.target)
    return Finding(
        kind="split_output_address",
        severity="warning",
        message=(
            f"split op {op} returns a new tensor that captured piece {piece} reads: the CUDA graph reads it at the "
            "address seen during capture, which the eager allocator may hand to another tensor at replay"
        ),
        file=file,
        line=line,
        code=source_line(file, line),
        op=op,
        hint="Allocate the result in the captured piece before the split op and let the op write into it "
        "(declare it in mutates_args), as vLLM's unified_attention_with_output does.",
        details={"reader_piece": piece},
    )


def _user_location(node: Any, roots: Sequence[str], is_user_file: Callable[..., bool]) -> tuple[str, int]:
    import re

    trace = node.meta.get("stack_trace") or ""
    frames = re.findall(r'File "([^"]+)", line (\d+)', trace)
    for file, line in reversed(frames):
        if is_user_file(file, roots):
            return file, int(line)
    return (frames[-1][0], int(frames[-1][1])) if frames else ("", 0)


def _run_replay(result: Any, split_ops: Sequence[str], options: TraceOptions, breaks: Sequence, say: Progress) -> tuple[Any, str]:
    from .replay import ReplayInput, replay

    if breaks:
        return None, "replay skipped: the target has graph breaks, so PCG would not capture it; fix them first"
    inputs = []
    for g in result.graphs:
        for size, args in sorted(g.recorded.items(), reverse=True):
            inputs.append(ReplayInput(size, g.index, g.gm, args))
    if not inputs:
        return None, "replay skipped: no graph was captured"
    inputs.sort(key=lambda ri: -ri.capture_size)
    if options.device.startswith("cuda") and options.replay_subprocess:
        from .replay import replay_in_subprocess

        return replay_in_subprocess(options, say), ""
    return replay(inputs, split_ops, options.device, options.isolate, on_progress=say), ""


def with_summary(report: Report, **changes: Any) -> Report:
    """A copy of ``report`` with fields replaced and the summary recomputed."""
    import dataclasses

    r = dataclasses.replace(report, **changes)
    summary = _summary(r.graphs, r.graph_breaks, r.findings, r.pieces, r.recompiles)
    if r.replay is not None:
        summary = dataclasses.replace(summary, replay_status=r.replay.status)
    return dataclasses.replace(r, summary=summary)


def resolve_split_ops(names: Sequence[str], use_sglang: bool) -> tuple[list[str], str, list[str]]:
    """Canonical split-op names: the user's, the target's ``SPLIT_OPS`` and sglang's registry.

    Raises:
        UsageError: a name is malformed or names no registered op.
    """
    from . import _torch_compat as compat
    from .split import normalise_op_name

    warnings: list[str] = []
    sglang_version = ""
    wanted = list(names)
    if use_sglang:
        sglang_ops, sglang_version = _sglang_split_ops()
        wanted += sglang_ops
    out: list[str] = []
    for name in wanted:
        canon = normalise_op_name(name)
        if compat.resolve_op(canon) is None:
            if name in names:
                raise UsageError(f"unknown split op {name!r}: no op {canon.replace('.', '::', 1)} is registered after loading the target")
            warnings.append(f"sglang split op {name} is not registered in this process; skipped")
            continue
        if canon not in out:
            out.append(canon)
    return out, sglang_version, warnings


def _sglang_split_ops() -> tuple[list[str], str]:
    # sglang's SPLIT_OPS is filled by @register_split_op() when sglang's layer modules are
    # imported: if the target did not import sglang, the registry is empty. Importing sglang just
    # to read it costs 2-4 s, so it is read only when sglang is already loaded.
    import sys

    if "sglang" not in sys.modules:
        return [], ""
    try:
        from sglang.srt.compilation.compilation_config import SPLIT_OPS  # type: ignore[import-not-found]
    except Exception:
        return [], ""
    try:
        from importlib.metadata import version

        ver = version("sglang")
    except Exception:
        ver = "unknown"
    return list(SPLIT_OPS), ver


def _graph_record(g: Any, nodes: tuple) -> Graph:
    from .analyze.frames import clean_function
    from .split import op_label, shape_of

    code = g.code
    calls = [n for n in g.gm.graph.nodes if n.op not in ("placeholder", "output", "get_attr")]
    weights = {n.name for n in nodes if n.is_weight}
    inputs = [n for n in g.gm.graph.nodes if n.op == "placeholder" and n.name not in weights]
    return Graph(
        index=g.index,
        compile_id=g.compile_id,
        function=clean_function(code.co_name) if code else "",
        file=code.co_filename if code else "",
        line=code.co_firstlineno if code else 0,
        num_nodes=len(calls),
        ops=tuple(op_label(n) for n in calls),
        capture_sizes=tuple(sorted(g.capture_sizes)),
        input_shapes=tuple(s for s in (shape_of(n) for n in inputs) if s),
        nodes=nodes,
    )


def _summary(graphs: Sequence, breaks: Sequence, findings: Sequence, pieces: Sequence, recompiles: Sequence) -> Summary:
    counts = count_findings(findings)
    return Summary(
        num_graphs=len(graphs),
        num_graph_breaks=len(breaks),
        num_findings=counts,
        num_pieces=len(pieces),
        num_recompiles=len(recompiles),
        capturable=not breaks and counts.get("error", 0) == 0,
    )


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return f"{device} ({torch.cuda.get_device_name()})"
    return "cpu"


def command_line() -> str:
    """The command as typed (for the report)."""
    return " ".join(["pcg-inspect", *sys.argv[1:]])
