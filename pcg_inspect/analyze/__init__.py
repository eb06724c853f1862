"""Stage 3, analyze: turn what Dynamo reported into graph breaks, guards, recompiles and findings."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Sequence

from ..load import Target
from ..report import Finding, GraphBreak, GuardSet, Recompile
from ..trace import TraceResult
from .breaks import build_breaks
from .frames import is_user_file, source_line
from .guards import build_guard_sets, build_recompiles, recompile_findings


@dataclass(frozen=True)
class Analysis:
    graph_breaks: tuple[GraphBreak, ...]
    findings: tuple[Finding, ...]
    guards: tuple[GuardSet, ...]
    recompiles: tuple[Recompile, ...]


def analyze(result: TraceResult, target: Target) -> Analysis:
    """Analyze one trace.

    Args:
        result: from ``trace.trace``.
        target: the loaded target (for user-code roots and token inputs).
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
    return Analysis(tuple(breaks), tuple(findings), tuple(guards), tuple(recompiles))


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
            )
        )
    return out


def _call_error_findings(result: TraceResult, roots: Sequence[str]) -> list[Finding]:
    out = []
    for err in result.call_errors:
        frames = traceback.extract_tb(err.exc.__traceback__)
        mine = [f for f in frames if is_user_file(f.filename, roots)]
        f = mine[-1] if mine else (frames[-1] if frames else None)
        msg = str(err.exc).strip().splitlines()
        out.append(
            Finding(
                kind="target_error",
                severity="error",
                message=f"the target raised {type(err.exc).__name__}: {msg[0] if msg else ''}"
                + (f" at {err.capture_size} tokens" if err.capture_size else ""),
                file=f.filename if f else "",
                line=int(f.lineno or 0) if f else 0,
                function=f.name if f else "",
                code=source_line(f.filename, int(f.lineno or 0)) if f else "",
                hint="The forward fails even when Dynamo falls back to eager: fix it before tracing.",
            )
        )
    return out
