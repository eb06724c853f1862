"""sglang's three capture backends on the GPU: tc_piecewise, breakable and full, one verdict each (issue #22).

Ground truth for full: the whole forward under a plain torch.cuda.graph (``silent_truth.plain_capture``). Skipped
without CUDA; each test prints a ``GPU|...`` line for the notes.
"""

import os

import pytest

from conftest import TARGETS, marker_line
from pcg_inspect import run as runner
from pcg_inspect.options import TraceOptions

from sglang_breakable import sglang_path
from silent_truth import plain_capture

pytestmark = pytest.mark.gpu
TARGET = str(TARGETS.parent.parent / "examples" / "backends" / "layers.py")
SGL = str(TARGETS / "breakable_sglang.py")
"""Targets decorated with sglang's own @eager_on_graph (sglang's module from its wheel on the device)."""


@pytest.fixture(autouse=True)
def _sglang_on_path(monkeypatch):
    """sglang's breakable module importable here and in pcg-inspect's children (the device has no sglang)."""
    folder = sglang_path()
    if folder:
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (folder, os.environ.get("PYTHONPATH", "")) if p))


def _run(factory, target=TARGET):
    report = runner.trace(TraceOptions(target=f"{target}:{factory}", sizes=(8, 16), device="cuda", backends=("all",)))
    verdicts = {b.backend: (b.capturable, b.captured) for b in report.summary.backends}
    print(f"GPU|{factory}|{verdicts}|{[(r.mode, r.status, [s.message[:90] for s in r.sizes]) for r in report.backend_replays]}|"
          f"{[(f.kind, getattr(f.details, 'backend', ''), getattr(f.details, 'cause', '')) for f in report.findings]}")
    return report, verdicts


def test_a_host_read_in_a_split_op_is_capture_safe_under_piecewise_and_breakable_not_under_full():
    truth = plain_capture(f"{TARGET}:make_split_sync")
    print(f"GPU|truth full split_sync|{truth}")
    assert truth["capture_error"]
    report, verdicts = _run("make_split_sync")
    assert verdicts == {"tc_piecewise": (True, True), "breakable": (True, True), "full": (False, True)}
    f = next(f for f in report.findings if f.kind == "capture_failed")
    assert f.details.backend == "full" and f.line == marker_line(TARGET, "MARK:split_call")
    assert "capture-safe under tc_piecewise and breakable" in f.message


def test_a_dynamo_graph_break_blocks_only_tc_piecewise():
    truth = plain_capture(f"{TARGET}:make_dynamo_only")
    print(f"GPU|truth full dynamo_only|{truth}")
    assert not truth["capture_error"] and truth["replay_equals_eager"]
    _, verdicts = _run("make_dynamo_only")
    assert verdicts == {"tc_piecewise": (False, False), "breakable": (True, True), "full": (True, True)}


def test_a_plain_trace_answers_the_engines_default_and_tc_piecewise():
    """No --backend: sglang's prefill default (breakable, captured) and tc_piecewise, each with its verdict."""
    report = runner.trace(TraceOptions(target=f"{TARGET}:make_dynamo_only", sizes=(8, 16), device="cuda"))
    verdicts = {b.backend: (b.capturable, b.captured) for b in report.summary.backends}
    print(f"GPU|plain trace dynamo_only|{verdicts}|capturable={report.capturable}|all={report.all_capturable}")
    assert verdicts == {"tc_piecewise": (False, False), "breakable": (True, True)}
    assert report.capturable and report.summary.backend == "breakable" and not report.all_capturable


def test_a_break_fed_a_per_call_python_value_replays_stale_under_breakable_with_its_line():
    report, verdicts = _run("make_stale_break")
    assert verdicts["breakable"] == (False, True)
    f = next(f for f in report.findings if f.kind == "stale_break_arg")
    assert f.line == marker_line(TARGET, "MARK:stale_break") and f.details.seen == "predicted"
    replay = next(r for r in report.backend_replays if r.mode == "breakable")
    assert replay.status == "mismatch"  # the capture succeeded, and the replay used the capture-time value


def test_a_side_stream_left_unjoined_is_joined_by_breakable_and_fails_full():
    truth = plain_capture(f"{TARGET}:make_side_stream")
    print(f"GPU|truth full side_stream|{truth}")
    assert truth["capture_error"]
    report, verdicts = _run("make_side_stream")
    assert verdicts["breakable"] == (True, True) and verdicts["full"] == (False, True)
    f = next(f for f in report.findings if f.kind == "capture_failed" and f.details.backend == "full")
    assert f.details.cause == "other_stream" and "breakable joins a side stream" in f.message
    assert f.line == marker_line(TARGET, "MARK:side_stream")  # the fork, not the end of capture
    assert next(r for r in report.backend_replays if r.mode == "breakable").status == "ok"


def test_sglangs_own_eager_on_graph_functions_are_break_points_on_the_gpu():
    report, verdicts = _run("make_sync", SGL)
    assert verdicts["breakable"] == (True, True) and verdicts["full"] == (False, True)
    report, verdicts = _run("make_count", SGL)
    assert verdicts["breakable"][0] is False and any(f.kind == "baked_break_output" for f in report.findings)


ORACLE_TARGETS = [f"{TARGET}:make_split_sync", f"{TARGET}:make_dynamo_only", f"{TARGET}:make_stale_break",
                  f"{TARGET}:make_side_stream", f"{SGL}:make_sync", f"{SGL}:make_count", f"{SGL}:make_stale",
                  f"{TARGETS / 'breakable.py'}:make_foreign_tensor", f"{TARGETS / 'breakable.py'}:make_static_step",
                  f"{TARGETS.parent.parent / 'examples' / 'nsa_indexer' / 'after.py'}:make",
                  f"{TARGETS.parent.parent / 'examples' / 'nsa_indexer' / 'before.py'}:make"]


def _json_of(script, *args):
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in [str(TARGETS.parent.parent), str(TARGETS.parent),
                                                                  sglang_path() or ""] if p))
    res = subprocess.run([sys.executable, str(TARGETS.parent / "gpu" / script), *args], capture_output=True, text=True,
                         env=env, timeout=300)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith(("[", "{"))]
    assert lines, res.stderr[-2000:]
    return json.loads(lines[-1])


@pytest.mark.parametrize("spec", ORACLE_TARGETS, ids=lambda s: s.rsplit("/", 1)[-1])
def test_breakable_and_full_agree_with_sglangs_own_capture_and_a_plain_capture(spec):
    """Per size: our breakable verdict vs sglang 0.5.23's BreakableCUDAGraphCapture, our full vs a plain
    torch.cuda.graph of the whole forward (sglang's full backend), each in a process of its own."""
    from sglang_breakable import load_sglang_breakable

    if load_sglang_breakable() is None:
        pytest.skip("sglang 0.5.23 (or its wheel in .whl/) is needed for the oracle")
    report = runner.trace(TraceOptions(target=spec, sizes=(8, 16), device="cuda", backends=("all",)))
    ours = {r.mode: {s.capture_size: s.status for s in r.sizes} for r in report.backend_replays}
    theirs = {row["size"]: row for row in _json_of("sglang_breakable.py", spec, "16,8")}
    for size in (16, 8):
        full = _json_of("silent_truth.py", spec, str(size))
        sg = theirs.get(size)
        sg_status = "-" if sg is None else ("capture_failed" if not sg["captured"] else "ok" if sg["ok"] else "mismatch")
        plain = "capture_failed" if full["capture_error"] else ("ok" if full["replay_equals_eager"] else "mismatch")
        print(f"GPU|oracle|{spec.rsplit('/', 1)[-1]}|{size}|breakable ours={ours['breakable'].get(size, '-')} "
              f"sglang={sg_status}|full ours={ours['full'].get(size, '-')} plain={plain}")
        if sg is not None:
            assert ours["breakable"].get(size) == sg_status, (size, ours, sg)
        if full.get("eager_agrees") is False:
            continue  # eager differs from itself: no reference to call either side ok (ours says so: mismatch)
        if size in ours["full"] and not (ours["full"][size] == "mismatch" and plain == "mismatch"):
            assert ours["full"][size] == plain, (size, ours, full)
