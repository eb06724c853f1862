"""`plan` on a GPU (issue #24): the engine's capture pass over the schedule, real CUDA graphs in one shared pool,
checks at the smallest and largest size only, and the forecast of a deeper model from a shallow sample (skipped
without CUDA). Each test prints a ``GPU|plan|...`` line for the issue notes; bench/plan_gpu.py validates full-size
models.
"""

import pytest

from conftest import EXAMPLES, TARGETS
from pcg_inspect.options import ModelOptions, PlanOptions, TraceOptions
from pcg_inspect.plan import make_plan

pytestmark = pytest.mark.gpu

# a real transformers Llama, big enough for its pool and capture to be more than noise
MID = ("hidden_size=1024", "intermediate_size=3584", "num_attention_heads=16", "num_key_value_heads=4", "head_dim=64",
       "vocab_size=4096", "num_hidden_layers=8")


def _plan(target, samples=(1, 2), sample_sizes=4, sizes="prefill:1024", **model):
    from pcg_inspect.options import parse_sizes

    opts = TraceOptions(target=target, sizes=parse_sizes(sizes), device="cuda", dtype="bfloat16",
                        backends=("tc_piecewise",), model=ModelOptions(**model))
    return make_plan(opts, PlanOptions(samples=samples, sample_sizes=sample_sizes))


@pytest.fixture(scope="module")
def measured():
    return _plan("llama3-8b", samples=(0,), sample_sizes=0, overrides=MID)


def test_the_capture_pass_captures_every_size_in_one_growing_pool(measured):
    p = measured.plan
    caps = p.samples[-1].captures
    print(f"GPU|plan|measured 8 layers x {len(caps)} sizes|capture {p.forecast_capture_s:.3f} s|pool "
          f"{p.forecast_pool_bytes / 2**20:.1f} MiB|peak {p.forecast_peak_bytes / 2**20:.0f} MiB|checked {p.checked_sizes}")
    assert [c.size for c in caps] == sorted(p.schedule, reverse=True) and all(c.status == "ok" for c in caps)
    # every captured piece at every size: 9 per size for 8 layers
    assert {c.graphs for c in caps} == {9} and p.graphs[0].total == 9 * len(p.schedule)
    pools = [c.pool_bytes for c in caps]
    assert pools == sorted(pools) and pools[0] > 0, pools  # shared by every size: it only grows
    # the largest size sets the pool; the other 25 sizes reuse it (outputs are not kept, as in sglang)
    assert pools[-1] < 1.5 * pools[0], pools
    # the session's own peak above what it started with: some, and it only grows (the bug: the checks' garbage,
    # freed inside the session, made it 0)
    peaks = [c.peak_extra_bytes for c in caps]
    assert peaks == sorted(peaks) and peaks[0] > 0, peaks
    assert p.forecast_peak_bytes > p.forecast_weight_bytes
    # only the smallest and largest size were replayed against eager, and they match
    assert p.checked_sizes == (4, 1024) and measured.replay.status == "ok"
    assert [s.capture_size for s in measured.replay.sizes] == [1024, 4]
    assert p.fits is True and p.gpu_bytes > 0


def test_a_sample_forecasts_the_deeper_model(measured):
    # every size sampled: at 1024 tokens and below a mid-size model's pool grows by 2 MiB small-block segments that
    # four sampled sizes can miss (full-size models: bench/plan_gpu.py, 4 sizes)
    forecast = _plan("llama3-8b", sample_sizes=0, overrides=MID).plan
    m = measured.plan
    pool_err = forecast.forecast_pool_bytes / m.forecast_pool_bytes - 1
    cap_err = forecast.forecast_capture_s / m.forecast_capture_s - 1
    pools = [c.pool_bytes >> 20 for c in m.samples[-1].captures]
    print(f"GPU|plan|forecast from 1,2 layers x {len(forecast.sampled_sizes)} sizes|pool {pool_err:+.1%}|capture "
          f"{cap_err:+.1%}|compile {forecast.forecast_compile_s:.2f} s vs {m.forecast_compile_s:.2f} s|pools MiB {pools}")
    assert forecast.graphs == m.graphs
    assert abs(pool_err) <= 0.10, (forecast.forecast_pool_bytes, m.forecast_pool_bytes)
    assert abs(cap_err) <= 0.25, (forecast.forecast_capture_s, m.forecast_capture_s)


def test_a_size_that_fails_capture_is_recorded_not_fatal():
    # an .item()-sized slice: fullgraph keeps it (no break), capture fails at every size
    report = _plan(f"{TARGETS / 'engine.py'}:make_item_slice", samples=(1,), sizes="prefill:64")
    p = report.plan
    caps = p.samples[-1].captures
    print(f"GPU|plan|engine.py:make_item_slice|{[(c.size, c.status) for c in caps]}|{p.notes[:1]}")
    assert caps and all(c.status != "ok" for c in caps)
    assert any("the capture pass failed at" in n for n in p.notes)
    assert report.replay.status == "capture_failed"


def test_a_target_with_graph_breaks_says_why_nothing_was_captured():
    report = _plan(f"{EXAMPLES / 'nsa_indexer' / 'before.py'}:make", samples=(1,), sizes="prefill:16")
    p = report.plan
    print(f"GPU|plan|nsa_indexer/before.py|{p.notes[:1]}")
    assert not p.samples[-1].captures and p.forecast_capture_s == 0 and p.fits is None
    assert "the capture pass did not run (replay skipped: the target has graph breaks" in p.notes[0]
