"""Stage 3, analyze: turn what Dynamo reported, and what the eager run saw, into breaks, guards and findings.

``analyze`` runs before the split; ``with_piece_findings`` adds what needs the pieces (host syncs
inside captured pieces, split ops returning fresh tensors).
"""

from __future__ import annotations

import dataclasses
import traceback
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from .. import kinds as registry
from ..details import ErrorDetails, OpDetails
from ..errors import one_line
from ..frames import is_user_file, library_frame, source_line
from ..load import Target
from ..report import Finding, GraphBreak, GuardSet, Recompile
from ..trace import TraceResult
from .breakable import break_findings, output_structure_findings
from .breaks import build_breaks
from .effects import divergence_findings
from .guards import build_guard_sets, build_recompiles, pinned_findings, recompile_findings
from .hostsync import host_sync_findings
from .observe import Observation, observe
from .ops import op_findings
from .reach import reached_lines
from .repro import repro_findings
from .source import data_ptr_findings
from .state import buffer_findings, state_guard_findings


@dataclass(frozen=True)
class Analysis:
    """The analysis records (JSON-safe), plus the live observation later steps reuse."""

    graph_breaks: tuple[GraphBreak, ...]
    findings: tuple[Finding, ...]
    guards: tuple[GuardSet, ...]
    recompiles: tuple[Recompile, ...]
    observation: Optional[Observation] = None
    reached: frozenset[tuple[str, int]] = field(default_factory=frozenset)


def analyze(result: TraceResult, target: Target, observe_ops: bool = True, break_ops: Sequence[str] = (),
            backends: Sequence[str] = ("tc_piecewise",)) -> Analysis:
    """Analyze one trace.

    Args:
        result: from ``trace.trace``.
        target: the loaded target (for user-code roots and inputs).
        observe_ops: run the target eagerly under the observer (op, host-sync and state findings).
        break_ops: breakable's break ops (``breakpoints``); with ``backends``, what breakable and full need checked.
    Returns:
        Analysis.
    """
    roots = target.roots
    obs = observe(target.module, target.calls, roots, break_ops, "breakable" in backends) if observe_ops else None
    breaks = _without_target_failures(build_breaks(result.breaks, result.sizes_per_break, roots), result, roots)
    recompiles = build_recompiles(result.recompiles)
    reached = reached_lines(result.graphs, breaks)
    findings: list[Finding] = _fatal_findings(breaks)
    pinned = pinned_findings(result.graphs, roots)
    findings += pinned
    findings += [f for f in recompile_findings(recompiles, roots)  # a pinned dim explains "compiled static at first"
                 if not (pinned and f.details.cause == "static_first")]
    findings += _call_error_findings(result, roots, obs)
    if obs is not None:
        findings += op_findings(obs, result.graphs, breaks, reached, roots)
    breaks = _observed_fixes(breaks, findings, obs)
    findings += data_ptr_findings(result.graphs, breaks, roots)
    findings += _opaque_findings(breaks)
    findings += buffer_findings(target.module, obs, reached, roots)
    findings += repro_findings(obs.repro if obs is not None else None, target.module, roots)
    findings += divergence_findings(obs.effects if obs is not None else None, result.effects, target.module, roots,
                                    max((c.tokens or 0 for c in target.calls), default=None) or None)
    findings += _new_state_guards(state_guard_findings(result.guard_sets, reached, roots), findings)
    if obs is not None and not obs.errors and ("breakable" in backends or "full" in backends):
        findings += output_structure_findings(obs, target)
    if obs is not None and not obs.errors and "breakable" in backends and (
            obs.break_functions or any(name in break_ops for name in obs.ops)):
        smallest = min(target.calls, key=lambda c: c.tokens or 0)
        findings += break_findings(target.module, smallest, roots, break_ops)
    return Analysis(tuple(breaks), tuple(findings), tuple(build_guard_sets(result.guard_sets)), tuple(recompiles),
                    obs, frozenset(reached))


def with_piece_findings(analysis: Analysis, result: TraceResult, cut: Any, target: Target,
                        backends: Sequence[str] = ("tc_piecewise",)) -> Analysis:
    """Findings that need the split: host syncs inside captured pieces (and, for ``full``, inside split ops), split
    ops returning fresh tensors."""
    syncs = host_sync_findings(result.graphs, cut, analysis.observation, set(analysis.reached), analysis.graph_breaks,
                               _split_names(cut), target.roots, backends)
    return dataclasses.replace(analysis, findings=analysis.findings + tuple(syncs) + tuple(cut.findings))


def _split_names(cut: Any) -> list[str]:
    return sorted({op for p in cut.pieces if p.is_split for op in p.ops})


def _new_state_guards(guards: list[Finding], findings: Sequence[Finding]) -> list[Finding]:
    # A guard that already failed during the trace is reported as a recompile, with its reason.
    failed = " ".join(f.details.guard for f in findings if f.kind == registry.PYTHON_STATE_GUARD.name)
    return [g for g in guards if g.details.source not in failed and g.details.guard not in failed]


def _without_target_failures(breaks: list[GraphBreak], result: TraceResult, roots: Sequence[str]) -> list[GraphBreak]:
    """A frame Dynamo gave up on because the target itself raises (wrong input shapes, a bug) is the
    target's error (a ``target_error`` finding), not a graph break."""
    if not result.call_errors:
        return breaks
    texts = [str(e.exc).strip().splitlines()[0] for e in result.call_errors if str(e.exc).strip()]
    lines = {_user_line(e.exc, roots) for e in result.call_errors}
    return [b for b in breaks if not ((b.file, b.line) in lines or any(t and t in b.reason for t in texts))]


def _user_line(exc: BaseException, roots: Sequence[str]) -> tuple[str, int]:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if is_user_file(f.filename, roots)]
    return (frames[-1].filename, int(frames[-1].lineno or 0)) if frames else ("", 0)


def _observed_fixes(breaks: list[GraphBreak], findings: Sequence[Finding], obs: Optional[Observation]) -> list[GraphBreak]:
    # A missing-fake break gets the fake impl derived from observed shapes, when the op was observed
    # (also for a fake impl that raises: the user replaces its body).
    from .ops import fake_impl_from_observation

    observed = {name: fake_impl_from_observation(info) for name, info in (obs.ops.items() if obs else ()) if info.calls}
    observed.update({f.op: f.fix for f in findings if f.kind == registry.UNREGISTERED_OP.name and f.op and f.fix})
    return [
        dataclasses.replace(b, fix=observed[b.op]) if b.category == "missing_fake_impl" and b.op in observed else b
        for b in breaks
    ]


def _opaque_findings(breaks: Sequence[GraphBreak]) -> list[Finding]:
    # A call into compiled code Dynamo cannot trace: the fix is a custom-op wrapper around that call.
    from .ops import sglang_available, wrapper_for_call

    sglang = sglang_available()
    out = []
    for b in breaks:
        if b.category != "opaque_call":
            continue
        lib = library_frame(b.user_stack) if any(not f.is_user for f in b.user_stack) else None
        reached = f" (Dynamo reached {lib.file}:{lib.line} in {lib.function})" if lib else ""
        out.append(Finding(
            kind="unregistered_op", severity="error",
            message=f"an opaque call Dynamo cannot trace{reached}: under PCG it must be a registered custom op",
            file=b.file, line=b.line, function=b.function, code=b.code,
            hint="Wrap the call as a custom op with a fake impl (below; with sglang, register_custom_op). "
            "Check mutates_args and the fake's output shape against the kernel.",
            fix=wrapper_for_call(b.code, sglang=sglang),
            details=OpDetails({}, (), (), (), library_frame=f"{lib.file}:{lib.line}" if lib else ""),
        ))
    return out


def _fatal_findings(breaks: Sequence[GraphBreak]) -> list[Finding]:
    return [
        Finding(kind="dynamo_error", severity="error", message=f"Dynamo raised while tracing {b.function}: {b.reason}",
                file=b.file, line=b.line, function=b.function, code=b.code, op=b.op, hint=b.hint, fix=b.fix,
                details=ErrorDetails(exception=_first(b.reason)))
        for b in breaks if b.fatal
    ]


def _first(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else ""


def _call_error_findings(result: TraceResult, roots: Sequence[str], obs: Optional[Observation]) -> list[Finding]:
    """One target_error per line the target raised at, with every size it raised at (a dynamo_error when the eager
    observation ran without error: only the compiled forward raises).

    An error raised inside a compiled graph has only the graph's code on its stack: the eager run's
    traceback of the same error gives the user's line.
    """
    eager_sites = {msg: site for msg, site in (obs.errors if obs else ()) if site[0]}
    by_line: dict[tuple[str, int, str], list[Any]] = {}
    for err in result.call_errors:
        frames = traceback.extract_tb(err.exc.__traceback__)
        mine = [f for f in frames if is_user_file(f.filename, roots)]
        f = mine[-1] if mine else (frames[-1] if frames else None)
        key = (f.filename if f else "", int(f.lineno or 0) if f else 0, f.name if f else "")
        site = eager_sites.get(one_line(err.exc))
        if site is not None:
            key = (site[0], site[1], key[2] if site[0] == key[0] else "")
        by_line.setdefault(key, []).append(err)
    out = []
    eager_ran = obs is not None and not obs.errors  # then the compiled forward raised where eager did not
    for (file, line, function), errs in by_line.items():
        sizes = sorted(e.capture_size for e in errs if e.capture_size)
        at = f" at {', '.join(map(str, sizes))} tokens" if sizes else ""
        if eager_ran and sizes and set(sizes) <= set(obs.outputs):  # eager ran at these very sizes
            out.append(Finding(
                kind="dynamo_error", severity="error",
                message=f"the compiled forward raised {one_line(errs[0].exc)}{at}, where the eager forward runs: "
                        "torch.compile (tc_piecewise) fails on it, breakable and full do not compile",
                file=file, line=line, function=function, code=source_line(file, line),
                hint="Rewrite the construct so Dynamo traces it (or keep it out of the compiled forward); the eager "
                     "code is right.",
                details=ErrorDetails(exception=one_line(errs[0].exc), capture_size=sizes[0] if sizes else None),
            ))
            continue
        out.append(Finding(
            kind="target_error", severity="error", message=f"the target raised {one_line(errs[0].exc)}{at}",
            file=file, line=line, function=function, code=source_line(file, line),
            hint="The forward fails even without Dynamo (eager): fix it (wrong input shapes, a bug) before tracing.",
            details=ErrorDetails(exception=one_line(errs[0].exc), capture_size=sizes[0] if sizes else None),
        ))
    return out
