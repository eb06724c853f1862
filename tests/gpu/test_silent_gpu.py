"""Silent wrong output on the GPU (issue #23 items 1-2), each against a plain torch.cuda.graph capture as ground truth.

Skipped without CUDA. Each test prints a ``GPU|...`` line for the issue notes.
"""

import pytest

from conftest import TARGETS, marker_line
from pcg_inspect import run as runner
from pcg_inspect.options import TraceOptions

from silent_truth import plain_capture

pytestmark = pytest.mark.gpu
SILENT = TARGETS / "silent"


def _run(name, sizes=(8, 16)):
    report = runner.trace(TraceOptions(target=f"{SILENT / name}.py:make", sizes=sizes, device="cuda",
                                       backends=("tc_piecewise",)))
    rp = report.replay
    print(f"GPU|{name}|{report.summary.verdict}|replay={rp.status if rp else '-'}|"
          f"{[(s.capture_size, s.status, s.message[:60]) for s in rp.sizes] if rp else []}|"
          f"{[(f.kind, f.details.cause if hasattr(f.details, 'cause') else '') for f in report.findings]}")
    return report


def test_an_op_reading_host_state_is_frozen_by_a_plain_capture_and_never_ok_in_the_replay():
    truth = plain_capture(f"{SILENT / 'host_state.py'}:make")
    print(f"GPU|truth host_state|{truth}")
    assert truth["replays_agree"] and not truth["eager_agrees"]  # the capture froze the counter's row
    report = _run("host_state")
    assert any(f.kind == "host_state" for f in report.findings)
    assert report.replay.status != "ok"
    assert all(s.status != "ok" and "no reproducible reference" in s.message for s in report.replay.sizes)


def test_a_reduce_overhead_helper_inside_an_op_fails_capture_as_nested_capture_at_the_helpers_line():
    truth = plain_capture(f"{SILENT / 'nested_compile.py'}:make")
    print(f"GPU|truth nested_compile|{truth}")
    assert "Cannot prepare for replay during capturing stage" in truth["capture_error"]
    report = _run("nested_compile")
    found = [f for f in report.findings if f.kind == "capture_failed"]
    assert found and found[0].details.cause == "nested_capture", report.findings
    path = str(SILENT / "nested_compile.py")
    assert (found[0].file, found[0].line) == (path, marker_line(path, "compiled code inside the op"))
    assert not report.capturable and report.replay.status == "capture_failed"


def test_torch_cond_on_a_device_predicate_fails_a_plain_capture_and_ours():
    truth = plain_capture(f"{SILENT / 'cond.py'}:make")
    print(f"GPU|truth cond|{truth}")
    assert truth["capture_error"]
    report = _run("cond")
    assert any(f.kind == "host_sync" and f.details.cause == "cond" for f in report.findings)
    assert report.replay.status == "capture_failed"


def test_nan_replays_are_never_ok():
    report = _run("non_finite")
    assert any(f.kind == "non_finite" for f in report.findings)
    assert report.replay.status != "ok" and all("holds NaN" in s.message for s in report.replay.sizes)
