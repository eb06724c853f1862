"""GPU replay with real CUDA graphs (skipped without CUDA). Run on the H100 through the device tool."""

import pytest

from conftest import EXAMPLES, TARGETS
from pcg_inspect.options import ModelOptions, TraceOptions
from pcg_inspect.pipeline import run as run_trace

pytestmark = pytest.mark.gpu
BAD = str(TARGETS / "replay_bad.py")


def _run(spec, sizes=(1, 8, 64, 512), isolate=False):
    return run_trace(TraceOptions(target=spec, capture_sizes=sizes, device="cuda", isolate=isolate)).report


def test_after_example_captures_and_replays_with_fresh_inputs():
    report = _run(f"{EXAMPLES / 'nsa_indexer' / 'after.py'}:make")
    rp = report.replay
    assert rp.mode == "cuda-graph" and rp.status == "ok", rp
    assert [s.capture_size for s in rp.sizes] == [512, 64, 8, 1]
    for s in rp.sizes:
        assert [p.is_split for p in s.pieces] == [False, True, False]
        captured = [p for p in s.pieces if not p.is_split]
        assert all(p.status == "ok" and p.graph_us > 0 and p.eager_us > 0 for p in captured), s
        assert s.peak_mem_bytes > 0


def test_isolated_pools_also_ok():
    report = _run(f"{EXAMPLES / 'nsa_indexer' / 'after.py'}:make", sizes=(8,), isolate=True)
    assert report.replay.mode == "cuda-graph-isolated" and report.replay.status == "ok"


def test_host_sync_in_captured_piece_is_capture_failed_at_its_index():
    report = _run(f"{BAD}:make_host_sync", sizes=(8,))
    (s,) = report.replay.sizes
    failed = [p for p in s.pieces if p.status == "capture_failed"]
    assert [p.index for p in failed] == [2], s
    assert failed[0].message
    assert report.replay.status == "capture_failed"


def test_python_value_baked_into_piece_is_mismatch_at_its_index():
    report = _run(f"{BAD}:make_baked", sizes=(8,))
    (s,) = report.replay.sizes
    assert [p.index for p in s.pieces if p.status == "mismatch"] == [2], s


def test_good_control_ok_on_gpu():
    assert _run(f"{BAD}:make_good", sizes=(1, 8)).replay.status == "ok"


def test_flashinfer_unwrapped_breaks_at_the_call():
    pytest.importorskip("flashinfer")
    path = EXAMPLES / "flashinfer_norm" / "unwrapped.py"
    report = run_trace(TraceOptions(target=f"{path}:make", capture_sizes=(8,), device="cuda")).report
    assert report.graph_breaks, report
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "flashinfer.norm.rmsnorm(" in t)
    b = report.graph_breaks[0]
    assert b.file == str(path) and b.line == line, b
    assert any(not f.is_user for f in b.user_stack), "the library frame must be in the stack"
    assert not report.summary.capturable


def test_flashinfer_wrapped_captures_and_matches_eager():
    pytest.importorskip("flashinfer")
    path = EXAMPLES / "flashinfer_norm" / "wrapped.py"
    report = run_trace(TraceOptions(target=f"{path}:make", capture_sizes=(1, 8, 64, 512), device="cuda")).report
    assert report.summary.capturable and not report.graph_breaks
    assert report.replay.status == "ok", report.replay


def test_device_assert_in_replay_does_not_lose_the_report():
    report = _run(f"{BAD}:make_device_assert", sizes=(8,))
    assert report.replay.status == "error"
    # the child either dies (note) or records the CUDA error for the size; the parent goes on
    said = report.replay.note + " ".join(s.message for s in report.replay.sizes)
    assert "replay process died" in said or "CUDA error" in said, report.replay
    assert report.summary.capturable  # the trace itself is fine
    # this process's CUDA context is still usable
    import torch

    assert float(torch.ones(2, device="cuda").sum()) == 2.0


def test_split_op_returning_new_tensor_flagged_on_gpu():
    report = _run(f"{BAD}:make_fresh_output", sizes=(8, 64))
    assert [f.kind for f in report.findings if f.kind == "split_output_address"]
    print("fresh-output replay:", [(s.capture_size, [(p.index, p.status, p.message[:60]) for p in s.pieces]) for s in report.replay.sizes])


def test_tensor_parallel_on_two_gpus(tmp_path):
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs")
    path = tmp_path / "tp.json"
    from typer.testing import CliRunner

    from pcg_inspect.cli import app

    res = CliRunner().invoke(app, ["trace", f"{EXAMPLES / 'tp' / 'layer.py'}:make", "--nproc", "2", "--device", "cuda",
                                   "--tokens", "1,8,64", "--json", str(path), "--quiet"])
    assert res.exit_code == 0, res.output
    from pcg_inspect.report import load_report

    r = load_report(str(path))
    assert [x.replay.mode for x in r.ranks] == ["cuda-graph", "cuda-graph"]
    assert all(x.replay.status == "ok" for x in r.ranks)
