"""Terminal view of a Report: read top-down, verdict first. Returns renderables; the CLI prints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from .. import kinds as registry
from ..details import CaptureDetails
from ..text import short_path

if TYPE_CHECKING:  # views read reports; they never import the report module at run time
    from ..report import Report

MAX_PIECE_ROWS = 40
_SEV_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def loc(file: str, line: int) -> str:
    return f"{short_path(file)}:{line}" if line else short_path(file)


def verdict(report: Report) -> Text:
    """One line: capturable or not, with the counts that say why."""
    s = report.summary
    nf = s.num_findings
    counts = (
        f"{s.num_graph_breaks} graph break(s), {nf.get('error', 0)} error(s), {nf.get('warning', 0)} warning(s)"
        f" · {s.counts_text()} · {s.num_recompiles} recompile(s)"
    )
    env = report.environment
    if s.all_capturable:
        line = Text.assemble(("✓ CAPTURABLE", "bold green"), " — ", counts)
    elif s.split_verdict() is not None:  # the engine's default captures it, another backend judged does not
        failing, why = s.split_verdict()
        line = Text.assemble(("✓ CAPTURABLE", "bold green"), f" under {s.backend} (sglang's {env.phase} default) · ",
                             (f"✗ NOT under {failing}", "bold red"), " — ", (why, "bold"), " · ", counts)
    else:
        line = Text.assemble(("✗ NOT CAPTURABLE", "bold red"), " — ", (s.verdict, "bold"), " · ", counts)
    if s.replay_status:
        style = "green" if s.replay_status == "ok" else "bold red"
        line.append(" · replay: ")
        line.append(s.replay_status, style=style)
    if len(s.backends) > 1 or any(b.backend != "tc_piecewise" for b in s.backends):
        for b in s.backends:  # one verdict per capture backend judged
            how = "captured on the GPU" if b.captured else "predicted: capture needs --device cuda" \
                if env.device == "cpu" else "not captured"
            line.append("\n  ")
            line.append(f"{'✓' if b.capturable else '✗'} {b.backend}", style="bold green" if b.capturable else "bold red")
            line.append(f" — {b.verdict or 'capturable'} ({how})")
            if b.backend == env.default_backend:
                line.append(f" · sglang's default for {env.phase}", style="dim")
            if b.backend == "breakable" and len(report.segments) > 1:
                n, d = len(report.segments), len(set(report.segments))
                line.append(f" · {n} segment(s) per size{f', {d} distinct' if d < n else ''}", style="dim")
    return line


def render(report: Report) -> Group:
    """The whole terminal view."""
    env = report.environment
    parts: list[Any] = [
        Text(
            f"pcg-inspect {env.tool_version} · {env.target} · torch {env.torch_version or 'not loaded'} · {env.device} · "
            f"capture sizes {', '.join(map(str, env.capture_sizes)) or 'as given'} · dynamic={env.dynamic}",
            style="dim",
        ),
        verdict(report),
    ]
    parts += list(_breaks(report))
    parts += list(_findings(report))
    parts += list(_pieces(report))
    parts += list(_guards(report))
    parts += list(_replay(report))
    parts += list(_backend_replays(report))
    parts += list(_ranks(report))
    for w in report.warnings:
        parts.append(Text(f"note: {w}", style="dim"))
    return Group(*parts)


def _breaks(report: Report) -> Iterable[Any]:
    if not report.graph_breaks:
        return
    yield Text("")
    if "tc_piecewise" in report.environment.backends:
        yield Text("Graph breaks — each one stops sglang's fullgraph=True capture (tc_piecewise)", style="bold")
    else:
        yield Text("Graph breaks — they stop only tc_piecewise (torch.compile), not judged here: breakable and full "
                   "run the forward without Dynamo", style="bold")
    for i, b in enumerate(report.graph_breaks, 1):
        gid = f" [{b.gb_id}]" if b.gb_id else ""
        fatal = " (Dynamo raised: whole frame fell back to eager)" if b.fatal else ""
        yield Text.assemble(
            f"{i:>2}. ", (b.category, "bold red"), f"  {loc(b.file, b.line)} in {b.function}", (gid, "dim"), fatal
        )
        if b.code:
            yield Text(f"      {b.line:>4} │ {b.code}", style="bold")
        yield Text(f"      {b.reason}", style="dim")
        if any(not f.is_user for f in b.user_stack):
            from ..frames import library_entry, library_frame

            lib, entry = library_frame(b.user_stack), library_entry(b.user_stack)
            via = f"{entry.function} ({loc(entry.file, entry.line)}) → " if entry is not None and entry != lib else ""
            yield Text(f"      reached library code: {via}{loc(lib.file, lib.line)} in {lib.function}: {lib.code}", style="dim")
        yield Text.assemble("      hint: ", b.hint)
        if b.fix:
            yield _fix(b.fix)
        if b.doc_url:
            yield Text(f"      docs: {b.doc_url}", style="dim")


def _fix(fix: str) -> Text:
    lines = fix.splitlines()
    out = Text("      fix:  ", style="green")
    out.append(lines[0], style="green")
    for ln in lines[1:]:
        out.append("\n            " + ln, style="green")
    return out


def _findings(report: Report) -> Iterable[Any]:
    if not report.findings:
        return
    yield Text("")
    yield Text("Findings", style="bold")
    order = {"error": 0, "warning": 1, "info": 2}
    for f in sorted(report.findings, key=lambda f: order.get(f.severity, 3)):
        where = f"  {loc(f.file, f.line)}" if f.file else ""
        op = f"  op {f.op}" if f.op else ""
        judged = report.environment.backends
        blocked = [b for b in registry.blocked_backends(f) if b in judged] if f.severity == "error" else []
        label = f"  [blocks {', '.join(blocked)}]" if len(judged) > 1 and blocked and len(blocked) < len(judged) else ""
        yield Text.assemble(
            ("  " + f.severity.ljust(8), _SEV_STYLE.get(f.severity, "")), (f.kind, "bold"), where, op, (label, "dim")
        )
        yield Text(f"      {f.message}")
        if f.code:
            yield Text(f"      {f.line:>4} │ {f.code}", style="dim")
        if f.hint:
            yield Text(f"      hint: {f.hint}")
        if f.fix:
            yield _fix(f.fix)


def _pieces(report: Report) -> Iterable[Any]:
    if not report.pieces:
        return
    yield Text("")
    ops = ", ".join(report.split_ops) or "none"
    per = set(report.summary.pieces_per_graph)
    shape = f"{per.pop()} per graph; " if len(per) == 1 else ""
    captured = sum(1 for p in report.pieces if not p.is_split)
    distinct = report.summary.num_distinct_pieces
    shared = (f"{captured} captured, {distinct} distinct (identical pieces, e.g. repeated layers, could share one "
              f"graph per size) · " if distinct and distinct < captured else "")
    yield Text(f"Pieces — {shape}{shared}a graph compiled again from the same code is listed once, with each compile "
               f"id · split ops: {ops}", style="bold")
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    for col in ("graph", "piece", "kind", "nodes", "ops", "inputs → outputs"):
        table.add_column(col, overflow="fold")
    graphs = {g.index: g for g in report.graphs}
    # A recompile of the same code gives the same pieces: show them once, with every compile id.
    compiles: dict[tuple, list[str]] = {}
    first_of: dict[int, tuple] = {}
    for g in report.graphs:
        key = (g.function, g.file, g.line, g.ops)
        compiles.setdefault(key, []).append(g.compile_id)
        first_of[g.index] = key
    rows = 0
    for p in report.pieces:
        g = graphs.get(p.graph)
        key = first_of.get(p.graph)
        if key is not None and compiles[key][0] != (g.compile_id if g else None):
            continue
        if rows >= MAX_PIECE_ROWS:
            table.add_row("…", "", "", "", "more in the JSON report", "")
            break
        rows += 1
        ids = compiles.get(key, [])
        gname = f"{p.graph} {g.function} [{', '.join(ids)}]" if g else str(p.graph)
        kind = Text("split (eager)", style="magenta") if p.is_split else Text("captured", style="green")
        shown = ", ".join(p.ops[:5]) + (f", … +{len(p.ops) - 5}" if len(p.ops) > 5 else "")
        io = f"{len(p.input_shapes)} in → {', '.join(p.output_shapes[:2])}{' …' if len(p.output_shapes) > 2 else ''}"
        table.add_row(Text(gname), str(p.index), kind, str(p.num_nodes), Text(shown), Text(io))
    yield table


def _guards(report: Report) -> Iterable[Any]:
    if not report.guards:
        return
    totals: dict[str, int] = {}
    for gs in report.guards:
        for t, c in gs.count_by_type().items():
            totals[t] = totals.get(t, 0) + c
    top = sorted(totals.items(), key=lambda kv: -kv[1])
    yield Text("")
    yield Text.assemble(
        ("Guards", "bold"),
        f" — {len(report.guards)} compiled frame(s), {sum(totals.values())} guards: ",
        ", ".join(f"{t} {c}" for t, c in top[:8]),
    )
    if report.recompiles:
        yield Text(f"Recompiles — {len(report.recompiles)}", style="bold")
        for rc in report.recompiles[:6]:
            at = f"at {rc.capture_size} tokens" if rc.capture_size else ""
            yield Text(f"  {rc.compile_id:<5} {rc.function} {at}: {'; '.join(rc.reasons)[:160]}", style="dim")
        if len(report.recompiles) > 6:
            yield Text(f"  … {len(report.recompiles) - 6} more in the JSON report", style="dim")


def _replay(report: Report) -> Iterable[Any]:
    rp = report.replay
    if rp is None:
        return
    yield Text("")
    yield Text.assemble(("Replay", "bold"), f" — {rp.mode} on {rp.device}: ", (rp.status, "green" if rp.status == "ok" else "bold red"))
    if rp.note:
        yield Text(f"  {rp.note}", style="dim")
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    for col in ("tokens", "piece", "kind", "status", "max abs err", "max rel err", "eager µs", "graph µs", "speed-up"):
        table.add_column(col, justify="right" if col not in ("kind", "status") else "left")
    for sr in rp.sizes:
        for pr in sr.pieces:
            speed = f"{pr.eager_us / pr.graph_us:.2f}x" if pr.graph_us > 0 else "-"
            style = "green" if pr.status == "ok" else ("dim" if pr.status == "skipped" else "bold red")
            table.add_row(
                str(sr.capture_size),
                str(pr.index),
                "split" if pr.is_split else "captured",
                Text(pr.status, style=style),
                f"{pr.max_abs_err:.2e}",
                f"{pr.max_rel_err:.2e}",
                f"{pr.eager_us:.1f}" if pr.eager_us else "-",
                f"{pr.graph_us:.1f}" if pr.graph_us else "-",
                speed,
            )
        table.add_row(
            str(sr.capture_size), "all", "model", Text(sr.status, style="green" if sr.status == "ok" else "bold red"),
            f"{sr.max_abs_err:.2e}", f"{sr.max_rel_err:.2e}", "", "", "",
        )
    yield table
    for sr in rp.sizes:
        if sr.peak_mem_bytes or sr.pool_bytes:
            pool = f", graph pool {_mib(sr.pool_bytes)}" if sr.pool_bytes else ""
            yield Text(f"  {sr.capture_size} tokens: peak GPU memory {_mib(sr.peak_mem_bytes)}{pool}, capture {sr.capture_ms:.1f} ms", style="dim")
        for pr in sr.pieces:
            if pr.message and pr.status != "ok":
                yield Text(f"  {sr.capture_size} tokens, piece {pr.index}: {pr.message}", style="red")
    yield from _failure_pictures(report)


def _backend_replays(report: Report) -> Iterable[Any]:
    """breakable / full: the module's forward captured per size (no pieces: segments, or one graph)."""
    for rp in report.backend_replays:
        yield Text("")
        yield Text.assemble(("Replay", "bold"), f" — {rp.mode} on {rp.device}: ",
                            (rp.status, "green" if rp.status == "ok" else "bold red"))
        if rp.note:
            yield Text(f"  {rp.note}", style="dim")
        for sr in rp.sizes:
            err = f", max abs err {sr.max_abs_err:.2e}" if sr.status in ("ok", "mismatch") else ""
            mem = f", peak GPU memory {_mib(sr.peak_mem_bytes)}" if sr.peak_mem_bytes else ""
            line = Text(f"  {sr.capture_size} tokens: ")
            line.append(sr.status, style="green" if sr.status == "ok" else "bold red")
            line.append(f"{err}{mem}, capture {sr.capture_ms:.1f} ms" + (f" — {sr.message}" if sr.message else ""))
            yield line


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB" if n >= 2**20 else f"{n / 2**10:,.0f} KiB"


def _failure_pictures(report: "Report") -> Iterable[Any]:
    """Each piece a capture failure or mismatch was pinned to, its ops in order, the failing one marked."""
    graphs = {g.index: g for g in report.graphs}
    for f in report.findings:
        d = f.details
        if not isinstance(d, CaptureDetails) or d.graph not in graphs or not d.node:
            continue
        nodes = [n for n in graphs[d.graph].nodes if n.piece == d.piece and n.op not in ("placeholder", "output", "get_attr")]
        line = Text(f"  piece {d.piece} at {d.capture_size} tokens: ")
        for i, n in enumerate(nodes):
            if i:
                line.append(" → ", style="dim")
            line.append(f"[{n.target}]" if n.name == d.node else n.target, style="bold red" if n.name == d.node else "")
        where = f"  ({short_path(f.file)}:{f.line})" if f.file else ""
        line.append(f"{where}", style="dim")
        yield line


def _ranks(report: Report) -> Iterable[Any]:
    if not report.ranks:
        return
    yield Text("")
    yield Text(f"Ranks — {report.environment.world_size} (tensor parallel)", style="bold")
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    for col in ("rank", "verdict", "graphs", "breaks", "pieces", "replay"):
        table.add_column(col)
    for r in report.ranks:
        s = r.summary
        table.add_row(str(r.environment.rank), "capturable" if s.all_capturable else "not capturable", str(s.num_graphs),
                      str(s.num_graph_breaks), str(s.num_pieces), s.replay_status or "-")
    yield table


def plain_text(report: "Report", width: int = 120) -> str:
    """The whole terminal view as plain text (no colour, no wrapping of long lines)."""
    console = Console(width=width, color_system=None, soft_wrap=True, record=True, file=_Null(), highlight=False)
    console.print(render(report))
    return console.export_text(styles=False)


class _Null:
    def write(self, _text: str) -> int:
        return 0

    def flush(self) -> None:
        pass


def _register() -> None:
    from ..report import register_text_view

    register_text_view(plain_text)  # Report.to_text is this view


_register()


def plan_view(report: Report) -> Group:
    """``pcg-inspect plan``: the schedule, the samples, compile per size, the capture pass, the forecast."""
    plan = report.plan
    env = report.environment
    if plan is None:
        return Group(Text("no plan in this report", style="dim"))
    sizes = plan.schedule
    head = Text(f"pcg-inspect {env.tool_version} · plan · {env.target} · torch {env.torch_version} · {env.device} · "
                f"{', '.join(plan.backends)} · {plan.phase}: {len(sizes)} sizes, {sizes[0]}–{sizes[-1]}" if sizes else "",
                style="dim")
    parts: list[Any] = [head, Text(""), *_plan_samples(plan)]
    compiled = [c for c in plan.sizes if c.graphs_compiled]
    run_total = sum(c.run_s for c in plan.sizes)
    parts.append(Text("Per size (deepest sample) — compile is paid where a graph is compiled", style="bold"))
    for c in compiled:
        parts.append(Text(f"  {c.size:>5} tokens: {c.graphs_compiled} graph(s) compiled, {c.compile_s:.2f} s"))
    parts.append(Text(f"  {len(plan.sizes) - len(compiled)} other size(s) reuse them: {run_total:.3f} s of runs in all"))
    parts += [Text(""), *_plan_capture(plan), *_plan_forecast(plan, env.dtype)]
    return Group(*parts)


def _plan_samples(plan: Any) -> list[Any]:
    gpu = bool(plan.forecast_pool_bytes or plan.forecast_capture_s)
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold", title_justify="left")
    for col in ("layers", "compile s", "graphs", "captured pieces", "distinct", "segments", "distinct", "trace s") + (
            ("capture s", "graph pool") if gpu else ()):
        table.add_column(col, justify="right")
    for s in plan.samples:
        table.add_row(str(s.layers or "-"), f"{s.compile_s:.2f}", str(s.graphs), str(s.captured_pieces),
                      str(s.distinct_pieces), str(s.segments or "-"), str(s.distinct_segments or "-"), f"{s.trace_s:.2f}",
                      *((f"{s.capture_s:.2f}", _mib(s.pool_bytes)) if gpu else ()))
    traced = plan.sampled_sizes or plan.schedule
    what = ("the whole schedule" if tuple(traced) == tuple(plan.schedule)
            else f"{len(traced)} sizes: {', '.join(map(str, traced))}")
    return [Text(f"Samples — each traced over {what}", style="bold"), table, Text("")]


def _plan_capture(plan: Any) -> list[Any]:
    """The deepest sample's capture pass, a row per size (GPU)."""
    captures = plan.samples[-1].captures if plan.samples else ()
    if not captures:
        return []
    grid = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    for col in ("tokens", "graphs", "warm-up ms", "capture ms", "pool after", "peak above weights", ""):
        grid.add_column(col, justify="right" if col else "left")
    for c in captures:
        grid.add_row(str(c.size), str(c.graphs), f"{c.warmup_ms:.1f}", f"{c.capture_ms:.1f}", _mib(c.pool_bytes),
                     _mib(c.peak_extra_bytes), Text(c.status if c.status != "ok" else "", style="red"))
    checked = ", ".join(map(str, plan.checked_sizes)) or "none"
    return [Text("Capture pass (deepest sample) — as the engine runs it, one pool shared by every size", style="bold"),
            grid, Text(f"  replayed against eager at {checked} tokens only; the other sizes were captured, not checked",
                       style="dim"), Text("")]


def _plan_forecast(plan: Any, dtype: str) -> list[Any]:
    whole = f"{plan.layers_total} layers" if plan.layers_total else "the target"
    parts = [Text(f"Forecast for {whole} over {len(plan.schedule)} sizes", style="bold")]
    weights = plan.forecast_weight_bytes
    shown = f"{weights / 2**30:.2f} GiB" if weights >= 2**30 else _mib(weights)
    parts.append(Text(f"  weights: {shown} ({dtype}, parameters and buffers)"))
    if "tc_piecewise" in plan.backends:
        parts.append(Text(f"  tc_piecewise compile: {plan.forecast_compile_s:.1f} s (breakable and full compile nothing)"))
    unit = {"tc_piecewise": "captured pieces", "breakable": "segments", "full": "whole forward"}
    for g in plan.graphs:
        saved = g.total - g.shared_total
        parts.append(Text(f"  {g.backend}: {g.total} CUDA graphs ({g.per_size} {unit.get(g.backend, '')} x "
                          f"{len(plan.schedule)} sizes); {g.shared_total} if identical ones shared one graph per size"
                          + (f" ({saved} fewer)" if saved > 0 else "")))
    if plan.forecast_pool_bytes or plan.forecast_capture_s:
        parts.append(Text(f"  tc_piecewise capture pass: {plan.forecast_warmup_s:.1f} s compile-pass forwards + "
                          f"{plan.forecast_capture_s:.1f} s capture; graph pool {plan.forecast_pool_bytes / 2**30:.2f} GiB,"
                          f" peak {plan.forecast_peak_bytes / 2**30:.2f} GiB per GPU"))
    if plan.memory_fit:
        parts.append(Text(f"  memory: {plan.memory_fit}", style="green" if plan.fits else "red"))
    parts.append(Text(f"  fit: {plan.fit}", style="dim"))
    parts += [Text(f"note: {note}", style="dim") for note in plan.notes]
    return parts
