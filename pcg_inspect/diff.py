"""diff: what a change fixed and what it broke, between two Reports.

Items are matched by meaning, not by line (code moves): breaks by category + graph-break type +
file + function + normalised source line; findings by kind + op + file + function; pieces by
position and op signature; guards by type + source; replay by capture size and piece index.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from .text import shorten
from .errors import UsageError
from .details import Details
from .report import Finding, GraphBreak, Report, to_jsonable
from .text import location

FAIL_ON = ("breaks", "findings", "replay", "timing", "plan", "any")
DEFAULT_FAIL_ON = ("breaks", "findings", "replay")
DEFAULT_TIME_THRESHOLD = 0.5
"""A piece must get 50% slower to count: CUDA-event medians on a busy GPU move by 10-30%."""
DRIFT_FACTOR = 10.0
DRIFT_FLOOR = 1e-4


@dataclass(frozen=True)
class Change:
    """One difference between A and B."""

    section: str
    """breaks | findings | pieces | recompiles | guards | replay | timing | verdict"""
    kind: str
    """fixed | introduced | changed"""
    title: str
    """One line a reviewer reads."""
    where: str = ""
    """file:line in the report it comes from (B for introduced, A for fixed)."""
    regression: bool = False
    detail: str = ""


@dataclass(frozen=True)
class DiffResult:
    """The diff of two reports (JSON-safe)."""

    a: str
    b: str
    capturable_a: bool
    capturable_b: bool
    changes: tuple[Change, ...]
    unchanged: dict[str, int]
    """Count of unchanged items per section."""
    regressions: tuple[str, ...]
    """Titles of changes that count as regressions under --fail-on."""
    notes: tuple[str, ...] = ()
    """What could not be compared, and why."""
    fail_on: tuple[str, ...] = DEFAULT_FAIL_ON
    unchanged_items: tuple[tuple[str, str], ...] = ()
    """(section, title) of unchanged breaks and findings, listed with --all."""

    @property
    def regressed(self) -> bool:
        return bool(self.regressions)

    def to_dict(self) -> dict[str, Any]:
        d = to_jsonable(self)
        d["regressed"] = self.regressed
        return d


def parse_fail_on(values: Iterable[str]) -> tuple[str, ...]:
    """'breaks,replay' / repeated values -> validated tuple (UsageError on unknown names)."""
    out: list[str] = []
    for v in values:
        for part in v.split(","):
            part = part.strip()
            if not part:
                continue
            if part not in FAIL_ON:
                raise UsageError(f"--fail-on takes {', '.join(FAIL_ON)}; got {part!r}")
            out.append(part)
    return tuple(dict.fromkeys(out)) or DEFAULT_FAIL_ON


def diff(a: Report, b: Report, fail_on: Sequence[str] = DEFAULT_FAIL_ON, time_threshold: float = DEFAULT_TIME_THRESHOLD) -> DiffResult:
    """Compare two reports.

    Args:
        a: before.
        b: after.
        fail_on: which sections' regressions count (``any`` = all).
        time_threshold: relative slow-down of a piece that counts as a timing change.
    Returns:
        DiffResult.
    """
    changes: list[Change] = []
    unchanged: dict[str, int] = {}
    notes: list[str] = []
    same_torch = _minor(a.environment.torch_version) == _minor(b.environment.torch_version)
    if not same_torch:
        notes.append(
            f"torch differs ({a.environment.torch_version} vs {b.environment.torch_version}): graph-break ids "
            "and guard sets are not compared"
        )
    same_device = a.environment.device == b.environment.device
    if a.environment.capture_sizes != b.environment.capture_sizes:
        notes.append(
            f"capture sizes differ ({list(a.environment.capture_sizes)} vs {list(b.environment.capture_sizes)}): "
            "replay is compared only at sizes both ran"
        )

    kept: list[tuple[str, str]] = []
    changes += _match(
        "breaks", a.graph_breaks, b.graph_breaks, lambda x: _break_key(x, same_torch), _break_title, unchanged, kept,
        regress=True,
    )
    changes += _match(
        "findings", a.findings, b.findings, _finding_key, _finding_title, unchanged, kept,
        regress_if=lambda f: f.severity == "error",
    )
    changes += _pieces(a, b, unchanged)
    changes += _recompiles(a, b, unchanged)
    if same_torch:
        changes += _guards(a, b, unchanged)
    changes += _replay(a, b, unchanged, same_device, time_threshold, notes)
    changes += _plan(a, b, same_device, time_threshold, notes)
    changes += _ranks(a, b, same_torch, unchanged, kept, notes)
    per_backend = _backend_verdicts(a, b)  # one line per backend whose verdict changed, when they say more
    if per_backend:
        changes += per_backend
    elif a.summary.all_capturable and not b.summary.all_capturable:  # every backend judged: what the exit code says
        changes.append(Change("verdict", "introduced", "capturable: true → false", regression=True))
    elif not a.summary.all_capturable and b.summary.all_capturable:
        changes.append(Change("verdict", "fixed", "capturable: false → true"))

    counted = set(FAIL_ON[:-1]) if "any" in fail_on else set(fail_on)
    counted.add("verdict")
    section_of = {"breaks": "breaks", "findings": "findings", "replay": "replay", "timing": "timing", "verdict": "verdict",
                  "plan": "plan"}
    regressions = tuple(
        c.title for c in changes if c.regression and section_of.get(c.section, c.section) in counted
    )
    return DiffResult(
        a=a.environment.target,
        b=b.environment.target,
        capturable_a=a.summary.all_capturable,
        capturable_b=b.summary.all_capturable,
        changes=tuple(changes),
        unchanged=unchanged,
        regressions=regressions,
        notes=tuple(notes),
        fail_on=tuple(fail_on),
        unchanged_items=tuple(kept),
    )


def _ranks(a: Report, b: Report, same_torch: bool, unchanged: dict[str, int], kept: list, notes: list[str]) -> list[Change]:
    # Multi-rank reports: the top level is rank 0; compare the other ranks' breaks and findings too.
    if not a.ranks and not b.ranks:
        return []
    if len(a.ranks) != len(b.ranks):
        notes.append(f"world sizes differ ({max(len(a.ranks), 1)} vs {max(len(b.ranks), 1)}): only ranks in both are compared")
    out: list[Change] = []
    ra = {r.environment.rank: r for r in a.ranks}
    rb = {r.environment.rank: r for r in b.ranks}
    for rank in sorted(set(ra) & set(rb) - {0}):
        x, y = ra[rank], rb[rank]
        sub: dict[str, int] = {}
        for c in _match("breaks", x.graph_breaks, y.graph_breaks, lambda v: _break_key(v, same_torch), _break_title, sub, kept, regress=True):
            out.append(dataclasses.replace(c, title=f"rank {rank}: {c.title}"))
        for c in _match("findings", x.findings, y.findings, _finding_key, _finding_title, sub, kept,
                        regress_if=lambda f: f.severity == "error"):
            out.append(dataclasses.replace(c, title=f"rank {rank}: {c.title}"))
    return out


def _minor(version: str) -> str:
    return ".".join(version.split("+")[0].split(".")[:2])


def _norm_code(code: str) -> str:
    return " ".join(code.split())


def _break_key(b: GraphBreak, same_torch: bool) -> tuple:
    # The file's base name: before.py and after.py of one example are "the same file".
    return (b.category, b.gb_type if same_torch else "", b.function, _norm_code(b.code))


def _break_title(b: GraphBreak) -> str:
    return f"graph break {b.category} in {b.function}: {b.code or shorten(b.reason, 80)}"


def _finding_key(f: Finding) -> tuple:
    details: Details = f.details
    return (f.kind, f.op, f.function, details.match_key())


def _finding_title(f: Finding) -> str:
    op = f" {f.op}" if f.op else ""
    return f"{f.severity} {f.kind}{op}: {shorten(f.message, 120)}"


def _match(
    section: str,
    items_a: Sequence[Any],
    items_b: Sequence[Any],
    key: Any,
    title: Any,
    unchanged: dict[str, int],
    kept: list[tuple[str, str]],
    regress: bool = False,
    regress_if: Any = None,
) -> list[Change]:
    ka = {key(x): x for x in items_a}
    kb = {key(x): x for x in items_b}
    out = []
    for k, x in ka.items():
        if k not in kb:
            out.append(Change(section, "fixed", title(x), _location(x)))
    for k, x in kb.items():
        if k not in ka:
            bad = regress or (regress_if(x) if regress_if else False)
            out.append(Change(section, "introduced", title(x), _location(x), regression=bad))
    unchanged[section] = sum(1 for k in ka if k in kb)
    kept.extend((section, title(kb[k])) for k in ka if k in kb)
    return out


def _location(x: Any) -> str:
    return location(getattr(x, "file", ""), getattr(x, "line", 0))


def _main_pieces(r: Report) -> list[Any]:
    if not r.graphs:
        return []
    main = r.graphs[0].index
    return [p for p in r.pieces if p.graph == main]


def _pieces(a: Report, b: Report, unchanged: dict[str, int]) -> list[Change]:
    pa, pb = _main_pieces(a), _main_pieces(b)
    out: list[Change] = []
    same = 0
    for i in range(max(len(pa), len(pb))):
        x = pa[i] if i < len(pa) else None
        y = pb[i] if i < len(pb) else None
        if x is None and y is not None:
            out.append(Change("pieces", "changed", f"piece {i} added ({'split' if y.is_split else 'captured'}, {y.num_nodes} nodes)"))
        elif y is None and x is not None:
            out.append(Change("pieces", "changed", f"piece {i} removed ({'split' if x.is_split else 'captured'}, {x.num_nodes} nodes)"))
        elif x is not None and y is not None:
            if x.is_split != y.is_split or (x.is_split and x.ops != y.ops):
                out.append(Change("pieces", "changed", f"piece {i}: {_sig(x)} → {_sig(y)}"))
            elif x.num_nodes != y.num_nodes:
                out.append(Change("pieces", "changed", f"piece {i} resized: {x.num_nodes} → {y.num_nodes} nodes"))
            else:
                same += 1
    sa = [(p.index, p.ops[0] if p.ops else "?") for p in pa if p.is_split]
    sb = [(p.index, p.ops[0] if p.ops else "?") for p in pb if p.is_split]
    if sa != sb:
        out.append(Change("pieces", "changed", f"split points moved: {_splits(sa)} → {_splits(sb)}"))
    if len(a.graphs) != len(b.graphs):
        kind = "fixed" if len(b.graphs) < len(a.graphs) else "introduced"
        out.append(Change("pieces", kind, f"graphs: {len(a.graphs)} → {len(b.graphs)}"))
    da, db = a.summary.num_distinct_pieces, b.summary.num_distinct_pieces
    if da and db and da != db:  # graphs the engine compiles and captures per size if identical ones were shared
        out.append(Change("pieces", "introduced" if db > da else "fixed", f"distinct captured pieces: {da} → {db}"))
    unchanged["pieces"] = same
    return out


def _sig(p: Any) -> str:
    return f"split {p.ops[0] if p.ops else '?'}" if p.is_split else f"captured ({p.num_nodes} nodes)"


def _splits(s: list[tuple[int, str]]) -> str:
    return ", ".join(f"{op}@{i}" for i, op in s) or "none"


def _norm_reason(r: str) -> str:
    return re.sub(r"\d+", "N", r)


def _recompiles(a: Report, b: Report, unchanged: dict[str, int]) -> list[Change]:
    def index(r: Report) -> dict[tuple[str, str], str]:
        return {(rc.function, _norm_reason(x)): x for rc in r.recompiles for x in rc.reasons}

    ia, ib = index(a), index(b)
    ra, rb = set(ia), set(ib)
    out = [Change("recompiles", "fixed", f"recompile in {k[0]}: {ia[k]}") for k in sorted(ra - rb)]
    out += [Change("recompiles", "introduced", f"recompile in {k[0]}: {ib[k]}") for k in sorted(rb - ra)]
    if len(a.recompiles) != len(b.recompiles):
        out.append(Change("recompiles", "changed", f"recompiles: {len(a.recompiles)} → {len(b.recompiles)}"))
    unchanged["recompiles"] = len(ra & rb)
    return out


def _guards(a: Report, b: Report, unchanged: dict[str, int]) -> list[Change]:
    def keys(r: Report) -> set[tuple[str, str]]:
        # Guards on the caller's state (L[...], self.x), not on globals such as G['torch'].int32.
        return {(g.type, g.source) for gs in r.guards for g in gs.guards if not g.source.startswith("G[")}

    ga, gb = keys(a), keys(b)
    interesting = ("EQUALS_MATCH", "CONSTANT_MATCH", "ID_MATCH", "SHAPE_ENV")
    out = [Change("guards", "fixed", f"guard {t} on {s} gone") for t, s in sorted(ga - gb) if t in interesting]
    out += [Change("guards", "introduced", f"new guard {t} on {s}") for t, s in sorted(gb - ga) if t in interesting]
    unchanged["guards"] = len(ga & gb)
    return out


_GOOD = ("ok",)


def _backend_verdicts(a: Report, b: Report) -> list[Change]:
    """A backend judged on both sides whose verdict changed (with more than one backend, or not tc_piecewise)."""
    va = {v.backend: v.capturable for v in a.summary.backends}
    vb = {v.backend: v.capturable for v in b.summary.backends}
    if set(va) | set(vb) <= {"tc_piecewise"}:
        return []
    out = []
    for name in (n for n in va if n in vb and va[n] != vb[n]):
        if va[name]:
            out.append(Change("verdict", "introduced", f"{name}: capturable true → false", regression=True))
        else:
            out.append(Change("verdict", "fixed", f"{name}: capturable false → true"))
    return out


def _plan(a: Report, b: Report, same_device: bool, threshold: float, notes: list[str]) -> list[Change]:
    """Two plans (``--fail-on plan``): more CUDA graphs over the schedule (or more that identical pieces cannot share),
    a graph pool more than ``POOL_GROWTH`` bigger, a pool that no longer fits, or a slower forecast compile or capture
    (same device only, beyond ``threshold``), is a regression."""
    pa, pb = a.plan, b.plan
    if pa is None or pb is None:
        if (pa is None) != (pb is None):
            notes.append("a plan is in only one of the two reports: not compared")
        return []
    out = []
    before = {g.backend: g for g in pa.graphs}
    for g in pb.graphs:
        old = before.get(g.backend)
        if old is None:
            continue
        for what, x, y in (("CUDA graphs over the schedule", old.total, g.total),
                           ("CUDA graphs if identical ones shared", old.shared_total, g.shared_total)):
            if x != y:
                out.append(Change("plan", "introduced" if y > x else "fixed", f"plan: {g.backend} {what} {x} → {y}",
                                  regression=y > x))
    for what, x, y in (("compile forecast", pa.forecast_compile_s, pb.forecast_compile_s),
                       ("capture forecast", pa.forecast_capture_s, pb.forecast_capture_s)):
        if same_device and x > 0 and y > x * (1 + threshold):
            out.append(Change("plan", "introduced", f"plan: {what} {x:.1f} s → {y:.1f} s", regression=True))
    x, y = pa.forecast_pool_bytes, pb.forecast_pool_bytes
    if x > 0 and y > x * (1 + POOL_GROWTH):
        out.append(Change("plan", "introduced", f"plan: graph pool forecast {x / 2**20:.0f} MiB → {y / 2**20:.0f} MiB",
                          regression=True))
    if pa.fits and pb.fits is False:
        out.append(Change("plan", "introduced", f"plan: the pool no longer fits: {pb.memory_fit}", regression=True))
    return out


POOL_GROWTH = 0.10
"""A graph pool forecast this much bigger is a plan regression (the pool is measured, not timed: 10 % is far above
its run-to-run spread, which is a 2 MiB segment)."""


def _replay(a: Report, b: Report, unchanged: dict[str, int], same_device: bool, threshold: float, notes: list[str]) -> list[Change]:
    if a.replay is None or b.replay is None:
        if (a.replay is None) != (b.replay is None):
            notes.append("replay ran in only one of the two reports: not compared")
        return []
    out: list[Change] = []
    same = 0
    if a.replay.status in _GOOD and b.replay.status not in _GOOD:
        out.append(Change("replay", "introduced", f"replay: {a.replay.status} → {b.replay.status}", regression=True))
    elif a.replay.status not in _GOOD and b.replay.status in _GOOD:
        out.append(Change("replay", "fixed", f"replay: {a.replay.status} → {b.replay.status}"))
    sizes_a = {s.capture_size: s for s in a.replay.sizes}
    if not same_device:
        notes.append(f"devices differ ({a.environment.device} vs {b.environment.device}): timings not compared")
    for sb in b.replay.sizes:
        sa = sizes_a.get(sb.capture_size)
        if sa is None:
            continue
        pa = {p.index: p for p in sa.pieces}
        for y in sb.pieces:
            x = pa.get(y.index)
            if x is None:
                continue
            tag = f"{sb.capture_size} tokens, piece {y.index}"
            if x.status in _GOOD and y.status not in _GOOD:
                out.append(Change("replay", "introduced", f"{tag}: {x.status} → {y.status}", regression=True, detail=y.message))
            elif x.status not in _GOOD and y.status in _GOOD:
                out.append(Change("replay", "fixed", f"{tag}: {x.status} → {y.status}"))
            elif y.max_abs_err > max(DRIFT_FLOOR, DRIFT_FACTOR * x.max_abs_err):
                out.append(Change("replay", "introduced", f"{tag}: error grew {x.max_abs_err:.2e} → {y.max_abs_err:.2e}", regression=True))
            else:
                same += 1
            if same_device and x.graph_us > 0 and y.graph_us > 0:
                ratio = y.graph_us / x.graph_us
                if ratio > 1 + threshold:
                    out.append(Change("timing", "introduced", f"{tag}: graph {x.graph_us:.1f} → {y.graph_us:.1f} µs ({ratio:.2f}x)", regression=True))
                elif ratio < 1 / (1 + threshold):
                    out.append(Change("timing", "fixed", f"{tag}: graph {x.graph_us:.1f} → {y.graph_us:.1f} µs ({ratio:.2f}x)"))
    unchanged["replay"] = same
    return out
