"""Pictures and the HTML report: DOT structure, auto piece view, render == trace --out, headless Chromium."""

import json
import re
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES, TARGETS, traced
from pcg_inspect.cli import app
from pcg_inspect.render.graph import CAPTURED, SPLIT, SPLIT_NODE, choose_detail, to_dot
from pcg_inspect.render.html import render_html

runner = CliRunner()
STACK = str(TARGETS / "stack.py")
BEFORE = str(EXAMPLES / "nsa_indexer" / "before.py")


def test_dot_has_a_cluster_per_piece_with_split_colours():
    report = traced(f"{STACK}:make", sizes=(8,))
    dot = to_dot(report, "nodes")
    clusters = re.findall(r"subgraph cluster_g0_p(\d+) \{\n[^\n]*label=\"piece \d+: (\w+)", dot)
    assert [int(i) for i, _ in clusters] == list(range(7))
    assert [k for _, k in clusters] == ["captured", "split", "captured", "split", "captured", "split", "captured"]
    assert dot.count(f'fillcolor="{SPLIT}"') == 3 and dot.count(f'fillcolor="{CAPTURED}"') == 4
    assert dot.count(f'fillcolor="{SPLIT_NODE}"') == 3  # the attention nodes themselves
    assert "pcg_stack.attention" in dot and "[s" in dot or "[8, 16] f32" in dot  # op and shape labels
    assert "weight" not in dot  # weights hidden by default
    assert "weight" in to_dot(report, "nodes", show_weights=True)


def test_auto_switches_to_piece_view_above_the_limit():
    report = traced(f"{STACK}:make", sizes=(8,))
    n = sum(g.num_nodes for g in report.graphs)
    assert choose_detail(report, "auto", limit=n) == "nodes"
    assert choose_detail(report, "auto", limit=n - 1) == "pieces"
    dot = to_dot(report, "pieces")
    assert dot.count("g0_p") >= 7 and "subgraph cluster_g0_p" not in dot


def test_breaks_are_marked_with_their_lines():
    report = traced(f"{BEFORE}:make", sizes=(1, 8, 64))
    dot = to_dot(report, "pieces")
    for b in report.graph_breaks:
        assert f":{b.line}" in dot and b.category in dot


def test_render_from_json_equals_trace_out(tmp_path):
    d1, d2 = tmp_path / "t", tmp_path / "r"
    res = runner.invoke(app, ["trace", f"{STACK}:make", "--tokens", "8", "--out", str(d1), "--quiet"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["render", str(d1 / "report.json"), "--out", str(d2)])
    assert res.exit_code == 0, res.output
    for name in ("graph.dot", "report.html") + (("graph.svg",) if shutil.which("dot") else ()):
        assert (d1 / name).read_text() == (d2 / name).read_text(), name


def test_render_bad_input(tmp_path):
    bad = tmp_path / "r.json"
    bad.write_text("{nope")
    res = runner.invoke(app, ["render", str(bad)])
    assert res.exit_code == 2 and "malformed report JSON" in res.output
    assert not (tmp_path / "report.html").exists()


def test_html_without_dot_falls_back_to_piece_list():
    report = traced(f"{STACK}:make", sizes=(8,))
    page = render_html(report, None, "Graphviz `dot` is not installed")
    assert "<div id='graph'>" not in page and "is not installed" in page
    pieces_table = page.split("<table id='pieces'>")[1].split("</table>")[0]
    assert pieces_table.count("<tr class='split'>") == 3 and pieces_table.count("<tr class=''>") == 4


def test_html_is_self_contained():
    page = render_html(traced(f"{BEFORE}:make", sizes=(1, 8, 64)), None)
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""".replace("href", "xhref"), page)
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)
    assert "url(" not in page and "@import" not in page


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs it)")
def test_html_in_headless_chromium(tmp_path):
    out = tmp_path / "o"
    res = runner.invoke(app, ["trace", f"{BEFORE}:make", "--tokens", "1,8,64", "--out", str(out), "--quiet"])
    assert res.exit_code == 1
    report = traced(f"{BEFORE}:make", sizes=(1, 8, 64))
    page = out / "report.html"
    common = FLAGS + [f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([CHROMIUM, *common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert "NOT CAPTURABLE" in dom
    for b in report.graph_breaks:
        assert f"before.py:{b.line}" in dom and b.category in dom
    assert dom.count("<tr class=\"\">") + dom.count("<tr class=\"split\">") >= len(report.pieces) or dom.count("<tr") >= len(report.pieces)
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *common, "--window-size=1280,2000", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


MEASURE = """<script>
(function(){
  var out = {};
  var px = function(el){ return parseFloat(getComputedStyle(el).fontSize); };
  var texts = Array.prototype.slice.call(document.querySelectorAll('#overview .piece, #overview .piece *, #overview .lane-title'));
  out.overview_min_px = Math.min.apply(null, texts.filter(function(el){ return el.textContent.trim(); }).map(px));
  out.pieces = document.querySelectorAll('#overview .piece').length;
  out.failed = document.querySelectorAll('#overview .piece.failed').length;
  var d = document.querySelector('details.nodes');
  if (d) {
    d.open = true;
    var hs = Array.prototype.slice.call(document.querySelectorAll('#graph svg text')).map(function(t){
      return t.getBoundingClientRect().height; }).filter(function(h){ return h > 0; });
    out.svg_text_min_px = hs.length ? Math.min.apply(null, hs) : 0;
    var box = document.getElementById('graph').getBoundingClientRect(), svg = document.querySelector('#graph svg').getBoundingClientRect();
    out.graph_box_h = box.height; out.svg_h = svg.height;
  }
  var ov = document.getElementById('overview').getBoundingClientRect();
  out.overview_h = ov.height;
  document.body.setAttribute('data-measure', JSON.stringify(out));
})();
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs it)")
@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot not installed (.ci/run installs it)")
def test_html_picture_is_readable_at_100_percent(tmp_path):
    """The piece overview and the node graph are read at 100 % zoom in a 1400-px window: text at least 11 px, the
    failed piece marked, no box much taller than what it holds (measured in headless Chromium, no pixels compared)."""
    page = tmp_path / "r.html"
    res = runner.invoke(app, ["trace", f"{TARGETS / 'replay_bad.py'}:make_baked", "--tokens", "8,16", "--html", str(page),
                              "--quiet"])
    assert res.exit_code == 1, res.output
    page.write_text(page.read_text().replace("</body>", MEASURE + "</body>"))
    common = FLAGS + [f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1000", "--virtual-time-budget=2000"]
    dom = subprocess.run([CHROMIUM, *common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    import html as htmllib
    import re

    m = re.search(r'data-measure="([^"]+)"', dom)
    assert m, dom[-2000:]
    got = json.loads(htmllib.unescape(m.group(1)))
    assert got["pieces"] == 3 and got["failed"] == 1, got
    assert got["overview_min_px"] >= 11, got
    assert got["svg_text_min_px"] >= 11, got
    assert got["graph_box_h"] <= got["svg_h"] + 40, got  # the node graph's box fits the graph: no empty band
    assert got["overview_h"] < 400, got


def test_without_the_graphviz_package_the_html_keeps_its_overview(monkeypatch):
    """A missing graphviz package (seen on a GPU box) costs the node graph, never the report (was an internal error)."""
    import sys

    from pcg_inspect.render.artifacts import build

    monkeypatch.setitem(sys.modules, "graphviz", None)  # `import graphviz` raises ImportError
    art = build(traced(f"{BEFORE}:make", sizes=(1, 8, 64)))
    assert art.dot is None and art.svg is None and "pip install graphviz" in art.note
    assert "id='overview'" in art.html and "NOT CAPTURABLE" in art.html
