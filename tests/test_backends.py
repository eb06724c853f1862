"""One verdict per capture backend (issue #22): tc_piecewise, breakable, full, predicted on the CPU.

The GPU side (real captures, and sglang 0.5.23's own BreakableCUDAGraphCapture as the oracle) is
tests/gpu/test_backends_gpu.py.
"""

import json
import subprocess
import sys

import pytest

from conftest import ROOT, TARGETS, marker_line
from pcg_inspect.options import TraceOptions

TARGET = str(TARGETS.parent.parent / "examples" / "backends" / "layers.py")


def _trace(factory, backends=("all",)):
    from pcg_inspect.pipeline import run

    return run(TraceOptions(target=f"{TARGET}:{factory}", sizes=(8, 16), backends=backends, sglang_split_ops=False)).report


def _verdicts(report):
    return {b.backend: b.capturable for b in report.summary.backends}


def test_a_host_read_inside_a_split_op_blocks_only_full():
    report = _trace("make_split_sync")
    assert _verdicts(report) == {"tc_piecewise": True, "breakable": True, "full": False}
    f = next(f for f in report.findings if f.kind == "host_sync")
    assert f.details.seen_in == "split_op" and f.line == marker_line(TARGET, "MARK:split_call")
    assert "not under full" in f.message and f"layers.py:{marker_line(TARGET, 'MARK:split_sync')}" in f.message  # the kernel's line
    assert not report.summary.capturable and report.summary.verdict.startswith("full: ")
    assert all(not b.captured for b in report.summary.backends)  # the CPU predicts; capture needs a GPU


def test_a_split_op_host_read_is_no_finding_when_full_is_not_judged():
    report = _trace("make_split_sync", backends=("tc_piecewise", "breakable"))
    assert not [f for f in report.findings if f.kind == "host_sync"] and report.summary.capturable


def test_a_dynamo_graph_break_blocks_only_tc_piecewise():
    report = _trace("make_dynamo_only")
    assert _verdicts(report) == {"tc_piecewise": False, "breakable": True, "full": True}
    assert report.problems("breakable") == [] and report.problems("tc_piecewise")
    assert report.summary.verdict.startswith("tc_piecewise: graph break (side_effect)")


def test_the_default_judges_tc_piecewise_alone_with_the_verdict_text_unchanged():
    report = _trace("make_dynamo_only", backends=())
    assert [b.backend for b in report.summary.backends] == ["tc_piecewise"]
    assert report.summary.verdict.startswith("graph break (side_effect)")


def test_the_cli_prints_a_verdict_per_backend_labels_findings_and_writes_them_in_json(tmp_path):
    out = tmp_path / "r.json"
    res = subprocess.run([sys.executable, "-m", "pcg_inspect", "trace", f"{TARGET}:make_split_sync", "--backend", "all",
                          "--tokens", "8,16", "--no-sglang-split-ops", "--json", str(out)],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 1, res.stderr[-2000:]
    assert "✓ tc_piecewise — capturable (predicted: capture needs --device cuda)" in res.stdout
    assert "✗ full — host_sync pcgb.attention" in res.stdout
    assert "[blocks full]" in res.stdout
    data = json.loads(out.read_text())
    assert [(b["backend"], b["capturable"]) for b in data["summary"]["backends"]] == [
        ("tc_piecewise", True), ("breakable", True), ("full", False)]
    assert data["environment"]["backends"] == ["tc_piecewise", "breakable", "full"]


def test_an_unknown_backend_is_one_line_and_exit_2():
    res = subprocess.run([sys.executable, "-m", "pcg_inspect", "trace", f"{TARGET}:make_split_sync", "--backend", "fast"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 2 and "--backend" in res.stderr and "breakable" in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_api_and_diff_speak_backends(tmp_path):
    import pcg_inspect
    from pcg_inspect.diff import diff

    a = pcg_inspect.inspect(f"{TARGET}:make_dynamo_only", sizes=(8,), backends=("breakable",))
    assert [(b.backend, b.capturable) for b in a.summary.backends] == [("breakable", True)] and a.capturable
    b = pcg_inspect.inspect(f"{TARGET}:make_split_sync", sizes=(8,), backends="all")
    c = pcg_inspect.inspect(f"{TARGET}:make_dynamo_only", sizes=(8,), backends="all")
    changes = diff(b, c)
    titles = [ch.title for ch in changes.changes if ch.section == "verdict"]
    assert "full: capturable false → true" in titles and "tc_piecewise: capturable true → false" in titles


@pytest.mark.parametrize("text, expected", [("all", ("tc_piecewise", "breakable", "full")),
                                            ("full,breakable", ("breakable", "full")), ("", ("tc_piecewise",))])
def test_backend_spellings(text, expected):
    from pcg_inspect.options import parse_backends

    assert parse_backends(text) == expected
