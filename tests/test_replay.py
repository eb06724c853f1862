"""CPU replay: pieces re-run against the unsplit graph; broken pieces found at the right index."""

import math

import torch

from conftest import EXAMPLES, TARGETS
from pcg_inspect.options import ModelOptions, TraceOptions
from pcg_inspect.pipeline import run as run_trace
from pcg_inspect.replay import compare, fresh_like, rmse

BAD = str(TARGETS / "replay_bad.py")


def _replay(spec, sizes=(1, 8)):
    return run_trace(TraceOptions(target=spec, sizes=sizes)).report


def test_after_example_replays_ok_at_every_size():
    report = _replay(f"{EXAMPLES / 'nsa_indexer' / 'after.py'}:make", (1, 8, 64))
    rp = report.replay
    assert rp is not None and rp.mode == "cpu" and rp.status == "ok"
    assert [s.capture_size for s in rp.sizes] == [64, 8, 1]
    for s in rp.sizes:
        assert [p.is_split for p in s.pieces] == [False, True, False]
        assert all(p.status == "ok" and p.max_abs_err == 0 for p in s.pieces)
    assert report.summary.replay_status == "ok"
    assert "no CUDA graph was captured" in rp.note


def test_stack_with_mutating_split_op_replays_ok():
    report = _replay(f"{TARGETS / 'stack.py'}:make")
    assert report.replay.status == "ok"
    assert len(report.replay.sizes[0].pieces) == 7


def test_piece_reading_python_state_is_a_mismatch_at_its_index():
    report = _replay(f"{BAD}:make_baked")
    for s in report.replay.sizes:
        bad = [p.index for p in s.pieces if p.status != "ok"]
        assert bad == [2], s
    assert report.replay.status == "mismatch"
    assert report.summary.replay_status == "mismatch"


def test_good_control_replays_ok():
    assert _replay(f"{BAD}:make_good").replay.status == "ok"


def test_no_replay_flag_and_broken_targets_skip():
    r = run_trace(TraceOptions(target=f"{BAD}:make_good", sizes=(8,), replay=False)).report
    assert r.replay is None and "replay_s" not in r.timings_s
    r = _replay(f"{TARGETS / 'breaks.py'}:make_data_ptr")
    assert r.replay is None and any("replay skipped" in w for w in r.warnings)


def test_compare_and_fresh_inputs():
    a = torch.ones(4, dtype=torch.float32)
    assert compare(a, a.clone())[2]
    abs_e, rel_e, close = compare(a, a + 1e-2)
    assert not close and math.isclose(abs_e, 1e-2, rel_tol=1e-3)
    assert compare(a.half(), (a + 1e-3).half())[2]  # within fp16 tolerance
    ints = torch.tensor([5, 9, 7])
    f = fresh_like(ints)
    assert f.dtype == ints.dtype and int(f.min()) >= 5 and int(f.max()) <= 9
    assert len(set(f.tolist())) == 3  # indices stay distinct
    positions = torch.arange(100, 108)
    assert sorted(fresh_like(positions).tolist()) == list(range(100, 108))
    assert rmse(a, a + 2) == 2.0


def test_split_op_returning_new_tensor_is_flagged_at_its_line():
    from conftest import marker_line

    report = _replay(f"{BAD}:make_fresh_output")
    (f,) = [f for f in report.findings if f.kind == "split_output_address"]
    assert f.severity == "warning" and f.op == "pcg_bad.fresh_attention"
    assert f.line == marker_line(BAD, "MARK:fresh_output") and f.details.reader_piece == 2
    # the with-output pattern is the fix: no finding for it
    assert not [f for f in _replay(f"{BAD}:make_good").findings if f.kind == "split_output_address"]


def test_pipeline_in_a_worker_process_gives_the_same_report():
    """The child every GPU run uses (runner.run_in_child), here on the CPU to keep its wiring tested."""
    from pcg_inspect import run as runner

    opts = TraceOptions(target=f"{BAD}:make_good", sizes=(8,))
    child = runner.run_child(opts)
    here = run_trace(opts).report
    assert child.replay.status == here.replay.status == "ok"
    assert child.replay.sizes[0].capture_size == 8
    assert [p.ops for p in child.pieces] == [p.ops for p in here.pieces]
