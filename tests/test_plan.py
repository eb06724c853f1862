"""`pcg-inspect plan` (issue #24): the engine's schedule over the whole model, compile and graph counts forecast from
a few layers at a few sizes; the capture pass's forecast (GPU numbers) from per-size records. The capture pass itself
runs on the GPU: tests/gpu/test_plan_gpu.py."""

import json
import subprocess
import sys

import pytest

from conftest import EXAMPLES, ROOT
from pcg_inspect.diff import diff
from pcg_inspect.options import ModelOptions, PlanOptions, TraceOptions
from pcg_inspect.plan import make_plan
from pcg_inspect.schedule import prefill_sizes

pytest.importorskip("transformers")

SMALL = ("hidden_size=128", "intermediate_size=256", "num_attention_heads=4", "num_key_value_heads=2", "head_dim=32",
         "vocab_size=512")


def _llama(layers, samples=(1, 2), sizes="prefill:256", sample_sizes=0, **options):
    from pcg_inspect.options import parse_sizes

    opts = TraceOptions(target="llama3-8b", sizes=parse_sizes(sizes), **options,
                        model=ModelOptions(overrides=SMALL + (f"num_hidden_layers={layers}",)))
    return make_plan(opts, PlanOptions(samples=samples, sample_sizes=sample_sizes))


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
    # a sample pays Dynamo's once-per-process setup before its compile is timed; the forecast counts it once
    assert planned.timings_s["compiler_setup_s"] > 0 and p.samples[-1].compiler_setup_s > 0
    assert p.forecast_compile_s >= p.samples[-1].compiler_setup_s


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
    for flag, value in (("--samples", "0"), ("--samples", "x"), ("--sample-sizes", "0"), ("--mem-fraction-static", "1.5")):
        bad = subprocess.run([sys.executable, "-m", "pcg_inspect", "plan", "llama3-8b", flag, value],
                             capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert bad.returncode == 2 and flag in bad.stderr and "Traceback" not in bad.stderr, (flag, bad.stderr)


def test_a_few_sizes_stand_for_the_schedule():
    from pcg_inspect.plan import sampled

    schedule = prefill_sizes()
    assert sampled(schedule, 4) == (4, 144, 448, 2048) and sampled(schedule, 2) == (4, 2048)
    assert sampled(schedule, 0) == schedule == sampled(schedule, 99) and sampled(schedule, 1) == (2048,)
    # the default: 4 sizes traced, the graph forecast the same as from the whole schedule, and it says so
    few = _llama(6, sample_sizes=4).plan
    assert few.sampled_sizes == (4, 32, 144, 256) and few.samples[-1].sizes == few.sampled_sizes
    assert [c.size for c in few.sizes] == [256, 144, 32, 4]
    whole = _llama(6).plan
    assert few.graphs == whole.graphs and whole.sampled_sizes == whole.schedule
    assert any("4 of the 22 sizes traced" in n for n in few.notes)
    assert not any("sizes traced" in n for n in whole.notes)


def _capture(size, layers, status="ok"):
    from pcg_inspect.report import SizeCapture

    # a made-up but exact law: each captured piece (one per layer, and one more) costs 0.4 ms + 0.001 ms per token
    # to capture, half that in the compile pass; the pool 10 MiB per layer at the largest size (later sizes reuse
    # it), the pass's peak above the weights 100 MiB per layer
    pieces = layers + 1
    ms = pieces * (0.4 + 0.001 * size)
    return SizeCapture(size, 0, pieces, ms / 2, ms, 10 * 2**20 * layers, 100 * 2**20 * layers, status)


def _gpu_samples(sizes=(4, 144, 448, 2048), layers=(1, 2)):
    from pcg_inspect.report import PlanSample

    return tuple(PlanSample(n, 1.0 + n, 1, n + 1, min(n + 1, 3), 1.0, 2**30 * n, sizes=tuple(sizes),
                            captures=tuple(_capture(s, n) for s in sorted(sizes, reverse=True)), compiler_setup_s=0.5)
                 for n in layers)


def test_the_capture_pass_is_forecast_on_lines_in_layers_and_tokens(planned):
    import dataclasses

    from pcg_inspect.plan import forecast

    schedule = prefill_sizes()
    gpu = dataclasses.replace(planned, environment=dataclasses.replace(planned.environment, gpu_bytes=80 * 2**30))
    opts = TraceOptions(target="llama3-8b", backends=("tc_piecewise",))
    p = forecast(opts, schedule, 32, _gpu_samples(), gpu)
    # proportional to the pieces (33 at 32 layers), linear in tokens between the sampled sizes: the sums are exact
    expected = sum(33 * (0.4 + 0.001 * t) for t in schedule) / 1e3
    assert p.forecast_capture_s == pytest.approx(expected, abs=1e-3)
    assert p.forecast_warmup_s == pytest.approx(expected / 2, abs=1e-3)
    # the peak: the whole model's weights (1 GiB a layer here) and the pass's own peak above them
    assert p.forecast_pool_bytes == 320 * 2**20 and p.forecast_peak_bytes == 32 * 2**30 + 3200 * 2**20
    assert p.forecast_compile_s == pytest.approx(1.0 + 32 + 0.5)  # the line, plus the setup once
    # sglang's default static share for an 80 GiB GPU (its reserve: 10 GiB at least) holds 32 GiB of weights, and the
    # rest a 320 MiB pool
    from pcg_inspect.schedule import default_mem_fraction_static

    assert p.mem_fraction_static == default_mem_fraction_static(80 * 2**30, 1, len(schedule)) == 0.832
    assert p.fits is True and "fits: the pool (0.31 GiB)" in p.memory_fit and "sglang's default" in p.memory_fit
    tight = forecast(opts, schedule, 32, _gpu_samples(), gpu, mem_fraction_static=0.999)
    assert tight.fits is False and "does not fit" in tight.memory_fit
    # no capture pass (a CPU): nothing forecast, and the plan says why
    cpu = forecast(opts, schedule, 32, [dataclasses.replace(s, captures=()) for s in _gpu_samples()], planned)
    assert cpu.forecast_capture_s == 0 and cpu.fits is None and any("need a GPU" in n for n in cpu.notes)


def test_a_gpu_plan_shows_its_capture_pass_and_diff_fails_on_a_bigger_pool(planned):
    import dataclasses

    from pcg_inspect.plan import forecast
    from pcg_inspect.render.console import plan_view
    from pcg_inspect.render.html import render_html
    from rich.console import Console

    gpu = dataclasses.replace(planned, environment=dataclasses.replace(planned.environment, gpu_bytes=80 * 2**30))
    opts = TraceOptions(target="llama3-8b", backends=("tc_piecewise",), device="cuda")
    base = dataclasses.replace(gpu, plan=forecast(opts, prefill_sizes(), 32, _gpu_samples(), gpu))
    console = Console(width=200, record=True)
    console.print(plan_view(base))
    text = console.export_text()
    assert "Capture pass (deepest sample)" in text and "replayed against eager at" in text
    assert "tc_piecewise capture pass:" in text and "memory: fits" in text
    assert "id='plan-capture'" in render_html(base, None)
    # the pool 20 % bigger, the capture twice as slow: both regressions; the pool no longer fitting too
    bigger = [dataclasses.replace(s, captures=tuple(dataclasses.replace(c, pool_bytes=int(c.pool_bytes * 1.2),
                                                                          capture_ms=c.capture_ms * 2)
                                                    for c in s.captures)) for s in _gpu_samples()]
    worse = dataclasses.replace(gpu, plan=forecast(opts, prefill_sizes(), 32, bigger, gpu))
    d = diff(base, worse, fail_on=("plan",))
    assert any(r.startswith("plan: graph pool forecast 320 MiB → 384 MiB") for r in d.regressions), d.regressions
    assert any(r.startswith("plan: capture forecast") for r in d.regressions)
    full = dataclasses.replace(gpu, plan=forecast(opts, prefill_sizes(), 32, bigger, gpu, mem_fraction_static=0.999))
    assert any(r.startswith("plan: the pool no longer fits") for r in diff(base, full, fail_on=("plan",)).regressions)
    assert not diff(base, base, fail_on=("plan",)).regressed


def test_a_size_that_failed_capture_is_said():
    import dataclasses

    from pcg_inspect.plan import forecast

    samples = list(_gpu_samples())
    samples[-1] = dataclasses.replace(samples[-1], captures=samples[-1].captures[:-1] + (
        dataclasses.replace(_capture(4, 2, "capture_failed"), message="operation not permitted when stream is capturing"),))
    opts = TraceOptions(target="llama3-8b", backends=("tc_piecewise",))
    from pcg_inspect.report import Report

    p = forecast(opts, prefill_sizes(), 32, samples, Report.from_json(_llama(2, samples=(1,)).to_json()))
    assert any("the capture pass failed at 4 tokens (operation not permitted" in n for n in p.notes)


def test_the_api_plans_too():
    import pcg_inspect

    r = pcg_inspect.inspect(f"{EXAMPLES / 'nsa_indexer' / 'after.py'}:make", plan=True, sizes="prefill:32",
                            sample_sizes="all")
    assert r.plan is not None and r.plan.schedule == (4, 8, 12, 16, 20, 24, 28, 32) == r.plan.sampled_sizes
    with pytest.raises(Exception, match="plan=True"):
        pcg_inspect.inspect(f"{EXAMPLES / 'nsa_indexer' / 'after.py'}:make", samples=(1,))
    with pytest.raises(Exception, match="target string"):
        pcg_inspect.inspect(lambda tokens=8: None, plan=True)
