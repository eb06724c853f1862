"""One self-contained HTML report: inline CSS, JS and SVG; it loads nothing from the network."""

from __future__ import annotations

from typing import Optional

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..report import Report
from .graph import escape as e
from ..text import short_path

_CSS = """
body{font:14px/1.45 -apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header{padding:16px 24px;background:#fff;border-bottom:1px solid #ddd}
main{padding:8px 24px 40px;max-width:1400px}
h1{font-size:18px;margin:0 0 4px} h2{font-size:16px;margin:28px 0 8px}
.meta{color:#666;font-size:12px}
.verdict{font-size:17px;font-weight:600;padding:10px 14px;border-radius:6px;margin-top:10px;display:inline-block}
.ok{background:#e8f5e9;color:#1b5e20}.bad{background:#ffebee;color:#b71c1c}
.card{background:#fff;border:1px solid #e0e0e0;border-radius:6px;padding:10px 14px;margin:8px 0}
.tag{display:inline-block;padding:1px 7px;border-radius:10px;font-size:12px;font-weight:600;margin-right:6px}
.error{background:#ffcdd2;color:#b71c1c}.warning{background:#fff3cd;color:#7a5b00}.info{background:#e3f2fd;color:#0d47a1}
.cat{background:#ede7f6;color:#4527a0}
code,pre{font-family:SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
pre{background:#f5f5f5;padding:8px 10px;border-radius:4px;overflow:auto;margin:6px 0}
pre.fix{background:#e8f5e9;position:relative}
button.copy{position:absolute;right:6px;top:6px;font-size:11px;cursor:pointer}
.src{color:#555}.hint{color:#333}
table{border-collapse:collapse;background:#fff;width:100%}
th,td{border:1px solid #e0e0e0;padding:4px 8px;text-align:left;vertical-align:top;font-size:13px}
th{background:#f0f0f0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.bar{height:9px;background:#90caf9;display:inline-block;vertical-align:middle}
.bar.g{background:#66bb6a}
.split{background:#f3e5f5}.failed{background:#ffcdd2}
.lane{background:#fff;border:1px solid #e0e0e0;border-radius:6px;padding:8px 12px;margin:8px 0}
.lane-title{font-size:13px;color:#444;margin-bottom:6px}
.pieces{display:flex;flex-wrap:wrap;align-items:stretch;gap:6px}
.piece{border:1px solid #a5d6a7;background:#e8f5e9;border-radius:6px;padding:6px 10px;font-size:13px;min-width:110px;max-width:320px}
.piece.split{border-color:#ce93d8;background:#f3e5f5}.piece.failed{border:2px solid #c62828;background:#ffcdd2}
.piece b{display:block;font-size:13px}.piece .ops{font-size:12px;color:#444;font-family:SFMono-Regular,Menlo,Consolas,monospace}
.piece .bad{color:#b71c1c;font-weight:600;font-size:12px}
.arrow{align-self:center;color:#999;font-size:16px}
details.nodes summary{cursor:pointer;font-size:13px;margin:8px 0}
#graph{border:1px solid #ddd;background:#fff;overflow:auto;max-height:80vh}
.note{color:#666;font-size:12px}
"""

_JS = """
document.querySelectorAll('button.copy').forEach(function(b){b.addEventListener('click',function(){
  var t=b.parentElement.querySelector('code').innerText;
  if(navigator.clipboard){navigator.clipboard.writeText(t);}b.innerText='copied';});});
"""


def _backends(report: Report) -> str:
    """One verdict per capture backend judged (shown when it is not just tc_piecewise)."""
    s = report.summary
    if not (len(s.backends) > 1 or any(b.backend != "tc_piecewise" for b in s.backends)):
        return ""
    rows = "".join(
        f"<li id='backend-{e(b.backend)}' class='{'ok' if b.capturable else 'bad'}'>{'✓' if b.capturable else '✗'} "
        f"<b>{e(b.backend)}</b> — {e(b.verdict or 'capturable')} "
        f"({'captured on the GPU' if b.captured else 'predicted: capture needs --device cuda'})"
        + (f" · sglang's default for {e(report.environment.phase)}" if b.backend == report.environment.default_backend else "")
        + "</li>"
        for b in s.backends)
    return f"<ul class='backends'>{rows}</ul>"


def render_html(report: Report, svg: Optional[str], graph_note: str = "") -> str:
    """The HTML report. ``svg``: the picture from ``render.graph`` (None: a piece list instead)."""
    env, s = report.environment, report.summary
    nf = s.num_findings
    if s.all_capturable:
        verdict = "CAPTURABLE"
    elif s.split_verdict() is not None:  # the engine's default captures it, another backend judged does not
        failing, why = s.split_verdict()
        verdict = f"CAPTURABLE under {s.backend} (sglang's {env.phase} default) · ✗ NOT under {failing} — {why}"
    else:
        verdict = f"NOT CAPTURABLE — {s.verdict}"
    counts = (
        f"{s.num_graph_breaks} graph break(s), {nf.get('error', 0)} error(s), {nf.get('warning', 0)} warning(s) · "
        f"{s.counts_text()} · {s.num_recompiles} recompile(s)"
        + (f" · replay: {s.replay_status}" if s.replay_status else "")
    )
    out = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>pcg-inspect: {e(env.target)}</title><style>{_CSS}</style></head><body>",
        "<header>",
        f"<h1>pcg-inspect · {e(env.target)}</h1>",
        f"<div class='meta'>pcg-inspect {e(env.tool_version)} · torch {e(env.torch_version)} · {e(env.device)} · "
        f"capture sizes {e(', '.join(map(str, env.capture_sizes)))} · dynamic={e(env.dynamic)} · schema {e(report.schema_version)}</div>",
        f"<div id='verdict' class='verdict {'ok' if s.all_capturable else 'bad'}'>{'✓' if s.capturable else '✗'} {e(verdict)} — {e(counts)}</div>",
        _backends(report),
        "</header><main>",
    ]
    out += _plan(report)
    out += _breaks(report) + _findings(report) + _pieces(report, svg, graph_note) + _guards(report) + _replay(report)
    if report.warnings:
        out.append("<h2>Notes</h2>" + "".join(f"<div class='note'>{e(w)}</div>" for w in report.warnings))
    out.append(f"</main><script>{_JS}</script></body></html>")
    return "\n".join(out) + "\n"


def _plan(r: Report) -> list[str]:
    """``pcg-inspect plan``: samples, compile per size (a bar per size that compiled), the forecast."""
    p = r.plan
    if p is None:
        return []
    whole = f"{p.layers_total} layers" if p.layers_total else "the target"
    rows = "".join(f"<tr><td>{s.layers or '-'}</td><td>{s.compile_s:.2f}</td><td>{s.graphs}</td><td>{s.captured_pieces}</td>"
                   f"<td>{s.distinct_pieces}</td><td>{s.segments or '-'}</td><td>{s.trace_s:.2f}</td></tr>" for s in p.samples)
    counts = " · ".join(f"{e(g.backend)}: {g.total} CUDA graphs ({g.shared_total} if identical ones shared)" for g in p.graphs)
    longest = max((c.first_s for c in p.sizes), default=0.0) or 1.0
    bars = "".join(f"<tr><td>{c.size}</td><td>{c.graphs_compiled}</td><td>{c.compile_s:.3f}</td><td>{c.run_s:.4f}</td>"
                   f"<td><div class='bar' style='width:{max(1, round(240 * c.first_s / longest))}px'></div></td></tr>"
                   for c in p.sizes)
    out = [f"<h2 id='plan'>Plan — {e(', '.join(p.backends))} · {e(p.phase)}, {len(p.schedule)} sizes, forecast for "
           f"{e(whole)}</h2>",
           f"<div class='card'>tc_piecewise compile {p.forecast_compile_s:.1f} s · {counts}<br><small>{e(p.fit)}</small></div>",
           "<table id='plan-samples'><tr><th>layers</th><th>compile s</th><th>graphs</th><th>captured pieces</th>"
           f"<th>distinct</th><th>segments</th><th>trace s</th></tr>{rows}</table>",
           "<table id='plan-sizes'><tr><th>tokens</th><th>graphs compiled</th><th>compile s</th><th>run s</th>"
           f"<th>first call</th></tr>{bars}</table>"]
    captures = p.samples[-1].captures if p.samples else ()
    if captures:
        top = max((c.capture_ms + c.warmup_ms for c in captures), default=0.0) or 1.0
        rows = "".join(
            f"<tr><td>{c.size}</td><td>{c.graphs}</td><td>{c.warmup_ms:.1f}</td><td>{c.capture_ms:.1f}</td>"
            f"<td>{c.pool_bytes / 2**20:.0f} MiB</td><td>{c.peak_extra_bytes / 2**20:.0f} MiB</td><td>{e(c.status)}</td>"
            f"<td><div class='bar' style='width:{max(1, round(240 * c.warmup_ms / top))}px;background:#999'></div>"
            f"<div class='bar' style='width:{max(1, round(240 * c.capture_ms / top))}px'></div></td></tr>"
            for c in captures)
        out += [f"<div class='card'>capture pass, whole model over the schedule: {p.forecast_warmup_s:.1f} s "
                f"compile-pass forwards + {p.forecast_capture_s:.1f} s capture · graph pool "
                f"{p.forecast_pool_bytes / 2**30:.2f} GiB · peak {p.forecast_peak_bytes / 2**30:.2f} GiB per GPU"
                + (f"<br>{e(p.memory_fit)}" if p.memory_fit else "")
                + f"<br><small>replayed against eager at {e(', '.join(map(str, p.checked_sizes)) or 'no size')} "
                  "tokens only</small></div>",
                "<table id='plan-capture'><tr><th>tokens</th><th>graphs</th><th>warm-up ms</th><th>capture ms</th>"
                f"<th>pool after</th><th>peak above weights</th><th>status</th><th>warm-up / capture</th></tr>{rows}</table>"]
    out += [f"<div class='note'>{e(n)}</div>" for n in p.notes]
    return out


def _fix(code: str) -> str:
    return f"<pre class='fix'><button class='copy' type='button'>copy</button><code>{e(code)}</code></pre>"


def _breaks(r: Report) -> list[str]:
    if not r.graph_breaks:
        return ["<h2>Graph breaks</h2><div class='card'>None: Dynamo traced every frame in one piece of graph per call.</div>"]
    scope = ("each one stops sglang's fullgraph=True capture (tc_piecewise)" if "tc_piecewise" in r.environment.backends
             else "they stop only tc_piecewise (torch.compile), not judged here")
    out = [f"<h2>Graph breaks ({len(r.graph_breaks)}) — {scope}</h2>"]
    for i, b in enumerate(r.graph_breaks, 1):
        doc = f" <a href='{e(b.doc_url)}'>{e(b.gb_id)}</a>" if b.doc_url else (f" {e(b.gb_id)}" if b.gb_id else "")
        from ..frames import library_frame

        lib = [library_frame(b.user_stack)] if any(not f.is_user for f in b.user_stack) else []
        out.append(
            f"<div class='card break' id='break-{i}'><span class='tag cat'>{e(b.category)}</span>"
            f"<b>{e(short_path(b.file))}:{b.line}</b> in <code>{e(b.function)}</code>{doc}"
            f"<pre class='src'>{b.line:>5} │ {e(b.code)}</pre>"
            f"<div>{e(b.reason)}</div>"
            + (f"<div class='note'>reached library code: {e(short_path(lib[-1].file))}:{lib[-1].line} in {e(lib[-1].function)}</div>" if lib else "")
            + f"<div class='hint'><b>hint:</b> {e(b.hint)}</div>"
            + (_fix(b.fix) if b.fix else "")
            + "</div>"
        )
    return out


def _findings(r: Report) -> list[str]:
    if not r.findings:
        return []
    order = {"error": 0, "warning": 1, "info": 2}
    out = [f"<h2>Findings ({len(r.findings)})</h2>"]
    for f in sorted(r.findings, key=lambda f: order.get(f.severity, 3)):
        where = f"<b>{e(short_path(f.file))}:{f.line}</b>" if f.file else ""
        out.append(
            f"<div class='card finding'><span class='tag {e(f.severity)}'>{e(f.severity)}</span><span class='tag cat'>{e(f.kind)}</span>"
            f"{where}{(' op <code>' + e(f.op) + '</code>') if f.op else ''}<div>{e(f.message)}</div>"
            + (f"<pre class='src'>{f.line:>5} │ {e(f.code)}</pre>" if f.code else "")
            + (f"<div class='hint'><b>hint:</b> {e(f.hint)}</div>" if f.hint else "")
            + (_fix(f.fix) if f.fix else "")
            + "</div>"
        )
    return out


def _pieces(r: Report, svg: Optional[str], note: str) -> list[str]:
    captured = sum(1 for p in r.pieces if not p.is_split)
    distinct = r.summary.num_distinct_pieces
    shared = f" · {captured} captured, {distinct} distinct" if distinct and distinct < captured else ""
    out = [f"<h2>Pieces — {e(r.summary.counts_text())}{e(shared)} · split ops: {e(', '.join(r.split_ops) or 'none')}</h2>"]
    out += _overview(r)
    if svg:
        out.append("<details class='nodes'><summary>The graph node by node (Graphviz): click to open; it scrolls at its "
                   "natural size</summary><div id='graph'>" + svg + "</div></details>")
    elif note:
        out.append(f"<div class='note'>{e(note)}</div>")
    out.append("<table id='pieces'><tr><th>graph</th><th>piece</th><th>kind</th><th>nodes</th><th>ops</th><th>inputs</th><th>outputs</th></tr>")
    graphs = {g.index: g for g in r.graphs}
    for p in r.pieces:
        g = graphs.get(p.graph)
        cls = "split" if p.is_split else ""
        out.append(
            f"<tr class='{cls}'><td>{p.graph} {e(g.function if g else '')} {e(g.compile_id if g else '')}</td><td>{p.index}</td>"
            f"<td>{'split (eager)' if p.is_split else 'captured'}</td><td class='num'>{p.num_nodes}</td>"
            f"<td><code>{e(', '.join(p.ops[:12]))}{' …' if len(p.ops) > 12 else ''}</code></td>"
            f"<td><code>{e(', '.join(p.input_shapes))}</code></td><td><code>{e(', '.join(p.output_shapes))}</code></td></tr>"
        )
    out.append("</table>")
    return out


def _overview(r: Report) -> list[str]:
    """One lane per graph (recompiles of the same code folded): its pieces as boxes in run order, split pieces
    between them, a failed piece and the op it failed at highlighted. Plain HTML text: readable at 100 %."""
    from .graph import distinct_graphs

    status = _piece_status(r)
    failed_at = _failed_ops(r)
    out = ["<div id='overview'>"]
    for g, ids in distinct_graphs(r):
        boxes = []
        for p in (p for p in r.pieces if p.graph == g.index):
            st = status.get((g.index, p.index), "")
            cls = "piece" + (" split" if p.is_split else "") + (" failed" if st not in ("", "ok", "skipped") else "")
            title = e(p.ops[0]) if p.is_split and p.ops else f"piece {p.index}"
            kind = "split (eager)" if p.is_split else "captured"
            ops = ", ".join(p.ops[:4]) + (f", … +{len(p.ops) - 4}" if len(p.ops) > 4 else "")
            bad = failed_at.get((g.index, p.index), "")
            boxes.append(f"<div class='{cls}' data-piece='{p.index}'><b>{title}</b>{kind} · {p.num_nodes} node(s)"
                         + (f" · {e(st)}" if st else "") + f"<div class='ops'>{e(ops)}</div>"
                         + (f"<div class='bad'>✗ {e(bad)}</div>" if bad else "") + "</div>")
        where = f"{short_path(g.file)}:{g.line}" if g.file else ""
        out.append(f"<div class='lane'><div class='lane-title'>graph {g.index} <code>{e(g.function)}</code> {e(where)} · "
                   f"compiled as {e(', '.join(ids))}</div><div class='pieces'>"
                   + "<span class='arrow'>→</span>".join(boxes) + "</div></div>")
    out.append("</div>")
    return out


def _piece_status(r: Report) -> dict[tuple[int, int], str]:
    """(graph, piece) -> the worst replay status over the capture sizes ('' without replay)."""
    rank = {"ok": 0, "skipped": 0, "mismatch": 2, "error": 3, "capture_failed": 4}
    out: dict[tuple[int, int], str] = {}
    for s in (r.replay.sizes if r.replay is not None else ()):
        for p in s.pieces:
            key = (s.graph, p.index)
            if rank.get(p.status, 1) >= rank.get(out.get(key, "ok"), 1):
                out[key] = p.status
    return out


def _failed_ops(r: Report) -> dict[tuple[int, int], str]:
    """(graph, piece) -> 'op at file:line' of the capture failure or mismatch pinned to it."""
    from ..details import CaptureDetails

    out: dict[tuple[int, int], str] = {}
    for f in r.findings:
        d = f.details
        if isinstance(d, CaptureDetails):
            at = f" at {short_path(f.file)}:{f.line}" if f.file else ""
            out.setdefault((d.graph, d.piece), f"{f.op or d.node}{at}")
    return out


def _guards(r: Report) -> list[str]:
    if not r.guards:
        return []
    totals: dict[str, int] = {}
    for gs in r.guards:
        for t, c in gs.count_by_type().items():
            totals[t] = totals.get(t, 0) + c
    rows = "".join(f"<tr><td>{e(t)}</td><td class='num'>{c}</td></tr>" for t, c in sorted(totals.items(), key=lambda kv: -kv[1]))
    out = [f"<h2>Guards — {len(r.guards)} compiled frame(s)</h2><table><tr><th>type</th><th>count</th></tr>{rows}</table>"]
    if r.recompiles:
        out.append(f"<h2>Recompiles ({len(r.recompiles)})</h2><table><tr><th>compile</th><th>function</th><th>tokens</th><th>guard failures</th></tr>")
        for rc in r.recompiles:
            out.append(
                f"<tr><td>{e(rc.compile_id)}</td><td>{e(rc.function)}</td><td class='num'>{rc.capture_size or ''}</td>"
                f"<td><code>{e('; '.join(rc.reasons))}</code></td></tr>"
            )
        out.append("</table>")
    return out


def _replay(r: Report) -> list[str]:
    rp = r.replay
    if rp is None:
        return []
    peak = max([p.eager_us for s in rp.sizes for p in s.pieces] + [1e-9])
    out = [
        f"<h2>Replay — {e(rp.mode)} on {e(rp.device)}: {e(rp.status)}</h2><div class='note'>{e(rp.note)}</div>",
        "<table id='replay'><tr><th>tokens</th><th>piece</th><th>kind</th><th>status</th><th>max abs err</th><th>max rel err</th>"
        "<th>eager µs</th><th>graph µs</th><th>speed-up</th></tr>",
    ]
    for s in rp.sizes:
        for p in s.pieces:
            cls = "failed" if p.status not in ("ok", "skipped") else ("split" if p.is_split else "")
            bars = f"<span class='bar' style='width:{80 * p.eager_us / peak:.0f}px'></span> {p.eager_us:.1f}" if p.eager_us else "-"
            gbar = f"<span class='bar g' style='width:{80 * p.graph_us / peak:.0f}px'></span> {p.graph_us:.1f}" if p.graph_us else "-"
            speed = f"{p.eager_us / p.graph_us:.2f}x" if p.graph_us else "-"
            out.append(
                f"<tr class='{cls}'><td class='num'>{s.capture_size}</td><td>{p.index}</td><td>{'split' if p.is_split else 'captured'}</td>"
                f"<td>{e(p.status)}{(' — ' + e(p.message)) if p.message else ''}</td><td class='num'>{p.max_abs_err:.2e}</td>"
                f"<td class='num'>{p.max_rel_err:.2e}</td><td>{bars}</td><td>{gbar}</td><td class='num'>{speed}</td></tr>"
            )
        out.append(
            f"<tr><td class='num'>{s.capture_size}</td><td>all</td><td>model</td><td>{e(s.status)}{(' — ' + e(s.message)) if s.message else ''}</td>"
            f"<td class='num'>{s.max_abs_err:.2e}</td><td class='num'>{s.max_rel_err:.2e}</td><td></td><td></td><td></td></tr>"
        )
    out.append("</table>")
    return out
