"""Guards and recompiles: what each compiled frame pins, and why Dynamo compiled again."""

from __future__ import annotations

import re
from typing import Any, Optional, Sequence

from .. import kinds as registry
from ..details import GuardDetails
from ..report import Finding, Guard, GuardSet, Recompile
from ..trace import RawGuardSet, RawRecompile
from ..frames import clean_function, is_user_file, source_line

_STACK_RE = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+)')
_CID_PREFIX = re.compile(r"^\s*\d+/\d+:\s*")
# An object or type id in a guard is an address in the tracing process: shown as <id> so that a report
# is the same from run to run and from the CLI and the API (the type after it names the object).
_PROCESS_ID = re.compile(r"(___check_(?:obj|type)_id\(.*?), \d+\)")


def stable_code(code: str) -> str:
    """Guard code without the tracing process's object ids."""
    return _PROCESS_ID.sub(r"\1, <id>)", code) if code else code


def _frame_of(code: Any) -> tuple[str, str, int]:
    if code is None:
        return "", "", 0
    return clean_function(code.co_name), code.co_filename, code.co_firstlineno


def build_guard_sets(raw: Sequence[RawGuardSet]) -> list[GuardSet]:
    """Report records for each compiled frame's guards."""
    out = []
    for gs in raw:
        fn, file, line = _frame_of(gs.code)
        guards = tuple(Guard(g.type, g.source, stable_code(g.code)) for g in gs.guards)
        out.append(GuardSet(gs.compile_id, fn, file, line, gs.graph, guards))
    return out


def clean_reason(reason: str) -> tuple[str, str, int]:
    """(guard text, source file, source line) from a GuardFail reason."""
    first = _CID_PREFIX.sub("", reason.strip().splitlines()[0] if reason.strip() else "")
    text = first.split("  #", 1)[0].strip() or first.strip()
    text = re.sub(r"\s*\(HINT:.*$", "", text)
    m = _STACK_RE.search(reason)
    if m:
        return text, m.group("file"), int(m.group("line"))
    m = re.search(r"#\s.*?#\s*\S*?([\w/.-]+\.py):(\d+)", first)
    return text, "", 0


def build_recompiles(raw: Sequence[RawRecompile]) -> list[Recompile]:
    """Report records for recompilations, with duplicate guard failures folded."""
    out = []
    for rc in raw:
        fn, file, line = _frame_of(rc.code)
        reasons: list[str] = []
        src_file, src_line = "", 0
        for r in rc.reasons:
            text, f, ln = clean_reason(r)
            text = stable_code(text)
            if text and text not in reasons:
                reasons.append(text)
            if f and not src_file:
                src_file, src_line = f, ln
        out.append(Recompile(rc.compile_id, fn, file, line, rc.capture_size, rc.call, tuple(reasons), src_file, src_line))
    return out


_SIZE_RE = re.compile(r"tensor '([^']+)' size mismatch at index (\d+)\. expected (\d+), actual (\d+)")
_MIN2_RE = re.compile(r"2 <= (\S+?)\.size\(\)\[(\d+)\]")


def classify_recompile(reason: str) -> tuple[str, str, str]:
    """(finding kind, cause, tensor) of one guard failure.

    cause: 'zero_one' (size 1 specialised), 'static_first' (a dim compiled static, then seen
    with another size), 'shape' (other shape guard), 'state' (Python value), 'other'.
    """
    m = _SIZE_RE.search(reason)
    if m:
        cause = "zero_one" if "1" in (m.group(3), m.group(4)) else "static_first"
        return "shape_specialization", cause, m.group(1)
    m = _MIN2_RE.search(reason)
    if m:
        return "shape_specialization", "zero_one", m.group(1)
    r = reason.lower()
    if "size()" in r or "stride mismatch" in r or "sizes()" in r:
        return "shape_specialization", "shape", ""
    if "___check_obj_id" in r or " is none" in r or "is not none" in r or "id_match" in r:
        return "python_state_guard", "state", ""
    if re.search(r"l\['self'\]|\bself\.|\.\w+ == ", r) and "tensor" not in r:
        return "python_state_guard", "state", ""
    return "recompile", "other", ""


def recompile_findings(recompiles: Sequence[Recompile], roots: Sequence[str]) -> list[Finding]:
    """One warning per cause: a cause seen in many frames (every resume function) counts once."""
    by_key: dict[tuple[str, str], dict] = {}
    for rc in recompiles:
        for reason in rc.reasons:
            kind, cause, tensor = classify_recompile(reason)
            key = (kind, cause if cause in ("zero_one", "static_first") else re.sub(r"\d+", "N", reason))
            e = by_key.setdefault(key, {"rc": rc, "cause": cause, "reason": reason, "sizes": [], "frames": [], "tensors": []})
            if rc.capture_size is not None and rc.capture_size not in e["sizes"]:
                e["sizes"].append(rc.capture_size)
            frame = f"{rc.function} ({rc.file}:{rc.line})"
            if frame not in e["frames"]:
                e["frames"].append(frame)
            if tensor and tensor not in e["tensors"]:
                e["tensors"].append(tensor)
    out = []
    for (kind, _), e in by_key.items():
        rc: Recompile = e["rc"]
        file, line = (rc.source_file, rc.source_line) if rc.source_file else (rc.file, rc.line)
        if file and not is_user_file(file, roots):
            file, line = rc.file, rc.line
        message, hint = _recompile_text(kind, e)
        out.append(
            Finding(
                kind=kind,
                severity="warning",
                message=message,
                file=file,
                line=line,
                function=rc.function,
                code=source_line(file, line),
                hint=hint,
                details=GuardDetails(
                    guard=e["reason"], cause=e["cause"], capture_sizes=tuple(sorted(e["sizes"])),
                    frames=tuple(e["frames"]), tensors=tuple(e["tensors"]),
                ),
            )
        )
    return out


def _recompile_text(kind: str, e: dict) -> tuple[str, str]:
    sizes = e["sizes"]
    at = f" at {', '.join(map(str, sorted(sizes)))} tokens" if sizes else ""
    nframes = len(e["frames"])
    where = f" in {nframes} frames" if nframes > 1 else ""
    names = f" ({', '.join(e['tensors'][:6])})" if e["tensors"] else ""
    if e["cause"] == "zero_one":
        return (
            f"Recompiled{at}{where}: size 1 of the token dim is specialised (0/1 specialisation){names}",
            "Expected with maybe_mark_dynamic at T=1: a separate graph with the size fixed at 1. sglang's "
            "piecewise backend captures only graphs with a symbolic token size, so at T=1 this graph runs "
            "without CUDA graphs (slower, not a failure). To share one graph, the token dim must not be "
            "specialised: torch._dynamo.mark_unbacked (--dynamic unbacked shows what that gives).",
        )
    if e["cause"] == "static_first":
        return (
            f"Recompiled{at}{where}: the token dim was compiled static at the first size, then seen at "
            f"another{names}",
            "An input carrying the token dim was not marked dynamic (tensors passed across a graph break "
            "never are): remove the break, or mark every token-dim input with maybe_mark_dynamic.",
        )
    if kind == registry.SHAPE_SPECIALIZATION.name:
        return (
            f"Recompiled{at}{where}: a shape was specialised — {e['reason']}",
            "The graph depends on a concrete size (a branch on x.shape[0], an unmarked input carrying "
            "the token dim): mark every token-dim input dynamic and do not branch on it.",
        )
    if kind == registry.PYTHON_STATE_GUARD.name:
        return (
            f"Recompiled{at}{where}: a guard on Python state failed — {e['reason']}",
            "The value is baked into the captured graph: pass it as a tensor input, keep it constant "
            "during capture, or move the state change out of forward.",
        )
    return (f"Recompiled{at}{where}: {e['reason']}", "Each recompile is another graph to capture; find what changes between calls.")


def first_graph_of(guard_sets: Sequence[GuardSet], compile_id: str) -> Optional[int]:
    """Graph index of a compile id, None when it produced no graph."""
    for gs in guard_sets:
        if gs.compile_id == compile_id:
            return gs.graph
    return None


def pinned_findings(graphs: Sequence[Any], roots: Sequence[str]) -> list[Finding]:
    """shape_specialization warnings for dynamic token dims a compile pinned to a constant, at the user line that
    pinned them (the ShapeEnv's specialisation stack), with the capture sizes that got a static graph."""
    by_line: dict[tuple[str, int], dict] = {}
    symbolic = sorted({s for g in graphs if not g.pinned for s in g.capture_sizes})
    for g in graphs:
        for source, value, stack in g.pinned:
            user = [(f, ln, fn) for f, ln, fn in stack if is_user_file(f, roots)]
            if not user:
                continue
            file, line, function = user[-1]
            e = by_line.setdefault((file, line), {"function": function, "sources": [], "sizes": set(), "values": set()})
            if source not in e["sources"]:
                e["sources"].append(source)
            e["sizes"].update(g.capture_sizes)
            if value is not None:
                e["values"].add(value)
    out = []
    for (file, line), e in by_line.items():
        sizes = sorted(e["sizes"])
        to = f" to {', '.join(map(str, sorted(e['values'])))}" if e["values"] else ""
        dyn = f"; symbolic at {', '.join(map(str, symbolic))}" if symbolic else ""
        names = ", ".join(_readable(s) for s in e["sources"])
        out.append(Finding(
            kind="shape_specialization", severity="warning", file=file, line=line, function=e["function"],
            code=source_line(file, line),
            message=f"the token dim ({names}) was specialised{to} here: the graph for {', '.join(map(str, sizes))} tokens "
                    f"is static{dyn}: Dynamo said nothing (maybe_mark_dynamic), each size this pins compiles a graph of "
                    "its own, and sglang's piecewise backend captures only graphs with a symbolic token size",
            hint="Do not compare the token size with a constant or narrow it to a constant in the compiled region: slice "
                 "with the size itself (x[: x.shape[0]]), state bounds with torch._check(x.shape[0] <= N), or decide the "
                 "branch before forward.",
            details=GuardDetails(guard="; ".join(e["sources"]) + to.replace(" to ", " == "), cause="pinned",
                                 capture_sizes=tuple(sizes), tensors=tuple(e["sources"])),
        ))
    return out


def _readable(source: str) -> str:
    """L['x'].size()[0] -> x.size()[0]"""
    return re.sub(r"L\['(\w+)'\]", r"\1", source)
