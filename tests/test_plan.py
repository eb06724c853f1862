"""`pcg-inspect plan` (issue #24, CPU part): the engine's schedule over the whole model, compile and graph counts
forecast from a few layers. Capture time and graph memory need the GPU (not measured yet)."""

import json
import subprocess
import sys

import pytest

from conftest import EXAMPLES, ROOT
from pcg_inspect.diff import diff
from pcg_inspect.options import ModelOptions, TraceOptions
from pcg_inspect.plan import make_plan
from pcg_inspect.schedule import prefill_sizes

pytest.importorskip("transformers")

SMALL = ("hidden_size=128", "intermediate_size=256", "num_attention_heads=4", "num_key_value_heads=2", "head_dim=32",
         "vocab_size=512")


def _llama(layers, samples=(1, 2), sizes="prefill:256", **options):
    from pcg_inspect.options import parse_sizes

    opts = TraceOptions(target="llama3-8b", sizes=parse_sizes(sizes), **options,
                        model=ModelOptions(overrides=SMALL + (f"num_hidden_layers={layers}",)))
    return make_plan(opts, samples)


@pytest.fixture(scope="module")
def planned():
    return _llama(6)


def test_the_plan_covers_the_schedule_and_forecasts_graph_counts(planned):
    p = planned.plan
    assert p.schedule == prefill_sizes(256) and p.layers_total == 6 and p.phase == "prefill"
    assert [s.layers for s in p.samples] == [1, 2] and [s.captured_pieces for s in p.samples] == [2, 3]
    # the defaults: sglang's prefill default (breakable) and tc_piecewise, each planned
    assert p.backends == ("tc_piecewise", "breakable") and [g.backend for g in p.graphs] == list(p.backends)
    n = len(p.schedule)
    tc, bcg = p.graphs
    # tc_piecewise: a captured piece per layer boundary, 7 for 6 layers, at every size; 3 distinct (first, middle,
    # last); breakable: a segment between attention calls, the same 7 and 3
    assert (tc.per_size, tc.shared_per_size, tc.total, tc.shared_total) == (7, 3, 7 * n, 3 * n)
    assert (bcg.per_size, bcg.shared_per_size) == (7, 3) and [s.segments for s in p.samples] == [2, 3]
    assert p.forecast_compile_s > 0 and "least squares through 1, 2 layers" in p.fit
    # compile is paid where a graph is compiled (the largest size first), the other sizes reuse it
    first = max(p.schedule)
    assert [c.size for c in p.sizes if c.graphs_compiled] == [first] and len(p.sizes) == len(p.schedule)
    assert any("need a GPU" in n for n in p.notes)


def test_the_graph_forecast_equals_a_measured_deeper_model(planned):
    measured = _llama(6, samples=(4,)).plan
    assert measured.samples[0].captured_pieces == 5 and measured.samples[0].distinct_pieces == 3
    whole = _llama(6, samples=(6,)).plan
    assert planned.plan.graphs == whole.graphs
    # weights grow by a layer's worth per layer: the line through 1 and 2 layers lands on the 6-layer model exactly
    assert planned.plan.forecast_weight_bytes == whole.samples[0].weight_bytes > planned.plan.samples[-1].weight_bytes


def test_the_plan_is_in_the_json_and_html_and_diff_reads_it(planned, tmp_path):
    from pcg_inspect.report import Report

    again = Report.from_json(planned.to_json())
    assert again.plan == planned.plan and again.compile_sizes == planned.compile_sizes
    deeper = _llama(8)
    d = diff(planned, deeper, fail_on=("plan",))
    n = len(planned.plan.schedule)
    assert f"plan: tc_piecewise CUDA graphs over the schedule {7 * n} → {9 * n}" in d.regressions, d.regressions
    assert any(t.startswith("plan: breakable CUDA graphs") for t in d.regressions)
    assert not diff(planned, planned, fail_on=("plan",)).regressed
    from pcg_inspect.render.html import render_html

    html = render_html(planned, None)
    assert "id='plan-sizes'" in html and "forecast for 6 layers" in html


def test_full_captures_one_graph_per_size_and_decode_has_its_own_schedule():
    p = _llama(4, samples=(1,), sizes="decode:16", backends=("full",), phase="decode").plan
    assert p.schedule == (1, 2, 4, 8, 12, 16) and p.backends == ("full",)
    assert [(g.backend, g.per_size, g.total) for g in p.graphs] == [("full", 1, 6)]


def test_the_cli_plans_a_file_target_and_refuses_bad_samples(tmp_path):
    out = tmp_path / "plan.json"
    res = subprocess.run([sys.executable, "-m", "pcg_inspect", "plan", f"{EXAMPLES / 'nsa_indexer' / 'after.py'}:make",
                          "--tokens", "prefill:64", "--json", str(out), "--quiet"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Forecast for the target over 10 sizes" in res.stdout
    plan = json.loads(out.read_text())["plan"]
    assert plan["schedule"] == [4, 8, 12, 16, 20, 24, 28, 32, 48, 64] and plan["layers_total"] == 0
    bad = subprocess.run([sys.executable, "-m", "pcg_inspect", "plan", "llama3-8b", "--samples", "0"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and "--samples" in bad.stderr and "Traceback" not in bad.stderr


def test_the_api_plans_too():
    import pcg_inspect

    r = pcg_inspect.inspect(f"{EXAMPLES / 'nsa_indexer' / 'after.py'}:make", plan=True, sizes="prefill:32")
    assert r.plan is not None and r.plan.schedule == (4, 8, 12, 16, 20, 24, 28, 32)
    with pytest.raises(Exception, match="target string"):
        pcg_inspect.inspect(lambda tokens=8: None, plan=True)
