"""GPU replay with real CUDA graphs (skipped without CUDA). Run on the H100 through the device tool.

Every run goes through ``runner.trace`` (the GPU worker a user's ``trace --device cuda`` uses), so a
capture that leaves a sticky CUDA error costs that worker only. Each test prints one summary line
(``GPU|target|...``) for the issue notes.
"""

import json

import pytest

from conftest import EXAMPLES, TARGETS, marker_line
from pcg_inspect import run as runner
from pcg_inspect.options import TraceOptions

pytestmark = pytest.mark.gpu
BAD = str(TARGETS / "replay_bad.py")
CAP = str(TARGETS / "capture_bad.py")
ENGINE = str(TARGETS / "engine.py")


def _run(spec, sizes=(1, 8, 64, 512), isolate=False, **kw):
    # these tests are about tc_piecewise's pieces (test_backends_gpu.py judges the other backends)
    report = runner.trace(TraceOptions(target=spec, sizes=sizes, device="cuda", isolate=isolate,
                                       **{"backends": ("tc_piecewise",), **kw}))
    rp = report.replay
    pieces = [(s.capture_size, [(p.index, p.status) for p in s.pieces]) for s in rp.sizes] if rp else []
    print(f"GPU|{spec.rsplit('/', 1)[-1]}|verdict={'CAPTURABLE' if report.capturable else 'NOT CAPTURABLE'}|"
          f"{report.summary.verdict}|replay={rp.status if rp else '-'}|{pieces}")
    return report


def _finding(report, kind):
    found = [f for f in report.findings if f.kind == kind]
    assert found, (kind, report.findings)
    return found[0]


def test_after_example_captures_and_replays_with_fresh_inputs():
    report = _run(f"{EXAMPLES / 'nsa_indexer' / 'after.py'}:make")
    rp = report.replay
    assert rp.mode == "cuda-graph" and rp.status == "ok", rp
    assert report.capturable
    assert [s.capture_size for s in rp.sizes] == [512, 64, 8, 1]
    for s in rp.sizes:
        assert [p.is_split for p in s.pieces] == [False, True, False]
        captured = [p for p in s.pieces if not p.is_split]
        assert all(p.status == "ok" and p.graph_us > 0 and p.eager_us > 0 for p in captured), s
        assert s.peak_mem_bytes > 0 and s.capture_ms > 0


def test_isolated_pools_also_ok():
    report = _run(f"{EXAMPLES / 'nsa_indexer' / 'after.py'}:make", sizes=(8,), isolate=True)
    assert report.replay.mode == "cuda-graph-isolated" and report.replay.status == "ok"


def test_item_sized_slice_is_host_sync_at_trace_time_and_capture_failed_on_the_gpu():
    report = _run(f"{ENGINE}:make_item_slice", sizes=(8,))
    line = marker_line(ENGINE, "MARK:item_slice")
    assert not report.graph_breaks
    assert _finding(report, "host_sync").line == line
    (s,) = report.replay.sizes
    assert [p.status for p in s.pieces] == ["capture_failed"]
    f = _finding(report, "capture_failed")
    assert f.line == line and f.details.piece == 0 and f.details.capture_size == 8
    assert not report.capturable and report.summary.verdict


def test_host_sync_inside_a_custom_op_is_capture_failed_at_the_call():
    report = _run(f"{BAD}:make_host_sync", sizes=(8,))
    (s,) = report.replay.sizes
    assert [p.index for p in s.pieces if p.status == "capture_failed"] == [2], s
    f = _finding(report, "capture_failed")
    assert f.line == marker_line(BAD, "MARK:op_call") and f.op == "pcg_bad.host_sync_scale"
    assert f.details.primary_error and "previous error during capture" not in f.details.primary_error
    assert f.details.cause in ("kernel_sync", "scalar"), f.details
    assert _finding(report, "host_sync").details.seen_in == "custom_op"  # found at trace time too


@pytest.mark.parametrize("kind, cause, needle", [
    ("pageable_copy", "pageable_copy", "pinned"),
    ("workspace", "stream_state", "workspace not initialized"),
    ("side_stream", "other_stream", ""),
])
def test_capture_failure_pinned_to_op_line_and_primary_error(kind, cause, needle):
    report = _run(f"{CAP}:make_{kind}", sizes=(8,))
    f = _finding(report, "capture_failed")
    print(f"GPU|capture_bad:{kind}|{f.op}|{f.file.rsplit('/', 1)[-1]}:{f.line}|cause={f.details.cause}|{f.details.primary_error}")
    assert f.line == marker_line(CAP, f"MARK:{kind}"), f
    assert f.details.cause == cause and needle in f.details.primary_error
    assert f.hint and not report.capturable


def test_python_value_baked_into_piece_is_replay_mismatch_at_its_node():
    report = _run(f"{BAD}:make_baked", sizes=(8,))
    (s,) = report.replay.sizes
    assert [p.index for p in s.pieces if p.status == "mismatch"] == [2], s
    f = _finding(report, "replay_mismatch")
    assert f.line == marker_line(BAD, "MARK:op_call") and f.op == "pcg_bad.stepped"
    assert f.details.cause == "baked_value"


def test_good_control_ok_on_gpu():
    report = _run(f"{BAD}:make_good", sizes=(1, 8))
    assert report.replay.status == "ok" and report.capturable


def test_device_assert_in_replay_does_not_lose_the_report():
    report = _run(f"{BAD}:make_device_assert", sizes=(8,))
    assert report.replay.status == "error"
    assert not report.capturable  # an illegal access at replay is the engine's failure too
    assert report.graphs and report.pieces  # the trace's records survive the poisoned context
    # the context is poisoned at once: fresh workers narrow the failure down to the op
    f = _finding(report, "capture_failed")
    print(f"GPU|device_assert|{f.op}|{f.file.rsplit('/', 1)[-1]}:{f.line}|phase={f.details.phase}|{f.details.primary_error[:80]}")
    assert f.details.phase == "replay" and f.op == "pcg_bad.crash_on_replay" and f.line == marker_line(BAD, "MARK:op_call")


def test_split_op_returning_new_tensor_flagged_on_gpu():
    report = _run(f"{BAD}:make_fresh_output", sizes=(8, 64))
    assert [f.kind for f in report.findings if f.kind == "split_output_address"]


def test_cli_exit_code_and_json_on_the_gpu(tmp_path):
    from typer.testing import CliRunner

    from pcg_inspect.cli import app

    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["trace", f"{ENGINE}:make_item_slice", "--device", "cuda", "--tokens", "8", "--json", str(out)])
    assert res.exit_code == 1, res.output
    data = json.loads(out.read_text())
    assert data["summary"]["capturable"] is False and data["replay"]["status"] == "capture_failed"
    assert "NOT CAPTURABLE" in res.output


def test_flashinfer_unwrapped_breaks_at_the_call():
    pytest.importorskip("flashinfer")
    path = EXAMPLES / "flashinfer_norm" / "unwrapped.py"
    report = _run(f"{path}:make", sizes=(8,))
    assert report.graph_breaks, report
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "flashinfer.norm.rmsnorm(" in t)
    b = report.graph_breaks[0]
    assert b.file == str(path) and b.line == line and b.category == "opaque_call", b
    assert not report.capturable


def test_flashinfer_wrapped_captures_and_matches_eager():
    pytest.importorskip("flashinfer")
    report = _run(f"{EXAMPLES / 'flashinfer_norm' / 'wrapped.py'}:make")
    assert report.capturable and not report.graph_breaks
    assert report.replay.status == "ok", report.replay


def test_tensor_parallel_on_two_gpus(tmp_path):
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs")
    report = runner.trace(TraceOptions(target=f"{EXAMPLES / 'tp' / 'layer.py'}:make", sizes=(1, 8, 64), backends=("tc_piecewise",),
                                       device="cuda", nproc=2))
    print(f"GPU|tp/layer.py nproc=2|{[(r.environment.rank, r.replay.mode, r.replay.status) for r in report.ranks]}")
    assert [r.replay.mode for r in report.ranks] == ["cuda-graph", "cuda-graph"]
    assert all(r.replay.status == "ok" for r in report.ranks) and report.capturable


def test_repeat_interleave_output_size_fix_makes_capture_succeed(tmp_path):
    """The output_size= that `fix` writes is right on a real CUDA graph: capture fails before, succeeds after."""
    import shutil

    from pcg_inspect.fix import run_fix

    target = tmp_path / "repeat_interleave.py"
    shutil.copy(TARGETS / "fixable" / "repeat_interleave.py", target)
    before = _run(f"{target}:make", sizes=(8, 64))
    assert _finding(before, "host_sync").details.output_size == "weights.numel()"
    assert _finding(before, "capture_failed").line == _finding(before, "host_sync").line
    result = run_fix(TraceOptions(target=f"{target}:make", sizes=(8, 64), device="cuda", backends=("tc_piecewise",)), write=True)
    assert "output_size=weights.numel()" in target.read_text()
    after = result.after
    print(f"GPU|repeat_interleave fix|before={before.summary.verdict}|after capturable={after.capturable}|"
          f"replay={after.replay.status}|{[(s.capture_size, [p.status for p in s.pieces]) for s in after.replay.sizes]}")
    assert after.capturable and after.replay.mode == "cuda-graph" and after.replay.status == "ok"


def test_api_on_the_gpu_runs_the_gpu_worker_and_a_module_in_process():
    import torch

    import pcg_inspect

    report = pcg_inspect.inspect(f"{EXAMPLES / 'nsa_indexer' / 'after.py'}:make", sizes=(8, 64), device="cuda",
                                 backends="tc_piecewise")
    assert report.capturable and report.replay.mode == "cuda-graph" and report.replay.status == "ok"
    m = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.GELU()).cuda()
    inline = pcg_inspect.inspect(m, (torch.randn(16, 64, device="cuda"),), device="cuda", backends="tc_piecewise")
    print(f"GPU|api|target={report.replay.status}|module={inline.replay.mode}:{inline.replay.status}")
    assert inline.capturable and inline.replay.mode == "cuda-graph" and inline.replay.status == "ok"
