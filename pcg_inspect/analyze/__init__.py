"""Stage 3, analyze: turn what Dynamo reported into graph breaks, guards, recompiles and findings."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any, Sequence

from ..details import ErrorDetails, OpDetails
from ..errors import one_line
from ..frames import is_user_file, library_frame, source_line
from ..load import Target
from ..report import Finding, GraphBreak, GuardSet, Recompile
from ..trace import TraceResult
from .breaks import build_breaks
from .guards import build_guard_sets, build_recompiles, recompile_findings
from .ops import observe, op_findings
from .source import data_ptr_findings


@dataclass(frozen=True)
class Analysis:
    graph_breaks: tuple[GraphBreak, ...]
    findings: tuple[Finding, ...]
    guards: tuple[GuardSet, ...]
    recompiles: tuple[Recompile, ...]


def analyze(result: TraceResult, target: Target, observe_ops: bool = True) -> Analysis:
    """Analyze one trace.

    Args:
        result: from ``trace.trace``.
        target: the loaded target (for user-code roots and token inputs).
        observe_ops: run the target eagerly under a dispatch mode to check its custom ops.
    Returns:
        Analysis records, JSON-safe.
    """
    roots = target.roots
    breaks = build_breaks(result.breaks, result.sizes_per_break, roots)
    guards = build_guard_sets(result.guard_sets)
    recompiles = build_recompiles(result.recompiles)
    findings: list[Finding] = []
    findings += _fatal_findings(breaks)
    findings += recompile_findings(recompiles, roots)
    findings += _call_error_findings(result, roots)
    if observe_ops and not result.call_errors:
        ops = observe(target.module, target.calls)
        findings += op_findings(ops, result.graphs, breaks, roots)
    breaks = _observed_fixes(breaks, findings)
    findings += data_ptr_findings(result.graphs, breaks, roots)
    findings += _opaque_findings(breaks, findings)
    return Analysis(tuple(breaks), tuple(findings), tuple(guards), tuple(recompiles))


def with_piece_findings(analysis: Analysis, result: TraceResult, cut: Any, target: Target) -> Analysis:
    """Findings that need the split: a split op's fresh output read by a captured piece."""
    import dataclasses

    return dataclasses.replace(analysis, findings=analysis.findings + tuple(cut.findings))


def _observed_fixes(breaks: list[GraphBreak], findings: Sequence[Finding]) -> list[GraphBreak]:
    # A missing-fake break gets the fake impl derived from observed shapes, when the op was observed.
    import dataclasses

    observed = {f.op: f.fix for f in findings if f.kind == "unregistered_op" and f.op and f.fix}
    return [
        dataclasses.replace(b, fix=observed[b.op]) if b.category == "missing_fake_impl" and b.op in observed else b
        for b in breaks
    ]


def _opaque_findings(breaks: Sequence[GraphBreak], findings: Sequence[Finding]) -> list[Finding]:
    # A library call Dynamo cannot trace: the fix is a custom-op wrapper around that call.
    from .ops import sglang_available, wrapper_for_call

    sglang = sglang_available()
    out = []
    for b in breaks:
        if b.category != "opaque_call":
            continue
        lib = library_frame(b.user_stack) if any(not f.is_user for f in b.user_stack) else None
        reached = f" (Dynamo reached {lib.file}:{lib.line} in {lib.function})" if lib else ""
        out.append(
            Finding(
                kind="unregistered_op",
                severity="error",
                message=f"an opaque call Dynamo cannot trace{reached}: under PCG it must be a registered custom op",
                file=b.file,
                line=b.line,
                function=b.function,
                code=b.code,
                hint="Wrap the call as a custom op with a fake impl (below; with sglang, register_custom_op). "
                "Check mutates_args and the fake's output shape against the kernel.",
                fix=wrapper_for_call(b.code, sglang=sglang),
                details=OpDetails({}, (), (), (), library_frame=f"{lib.file}:{lib.line}" if lib else ""),
            )
        )
    return out


def _fatal_findings(breaks: Sequence[GraphBreak]) -> list[Finding]:
    out = []
    for b in breaks:
        if not b.fatal:
            continue
        out.append(
            Finding(
                kind="dynamo_error",
                severity="error",
                message=f"Dynamo raised while tracing {b.function}: {b.reason}",
                file=b.file,
                line=b.line,
                function=b.function,
                code=b.code,
                op=b.op,
                hint=b.hint,
                fix=b.fix,
                details=ErrorDetails(exception=_first(b.reason)),
            )
        )
    return out


def _first(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else ""


def _call_error_findings(result: TraceResult, roots: Sequence[str]) -> list[Finding]:
    out = []
    for err in result.call_errors:
        frames = traceback.extract_tb(err.exc.__traceback__)
        mine = [f for f in frames if is_user_file(f.filename, roots)]
        f = mine[-1] if mine else (frames[-1] if frames else None)
        out.append(
            Finding(
                kind="target_error",
                severity="error",
                message=f"the target raised {one_line(err.exc)}"
                + (f" at {err.capture_size} tokens" if err.capture_size else ""),
                file=f.filename if f else "",
                line=int(f.lineno or 0) if f else 0,
                function=f.name if f else "",
                code=source_line(f.filename, int(f.lineno or 0)) if f else "",
                hint="The forward fails even when Dynamo falls back to eager: fix it before tracing.",
                details=ErrorDetails(exception=one_line(err.exc), capture_size=err.capture_size),
            )
        )
    return out
