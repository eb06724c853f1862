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
    return run_trace(f"{TARGET}:{factory}", backends=backends)


def _verdicts(report):
    return {b.backend: b.capturable for b in report.summary.backends}


def test_a_host_read_inside_a_split_op_that_is_a_break_point_blocks_only_full():
    report = _trace("make_split_sync")
    assert _verdicts(report) == {"tc_piecewise": True, "breakable": True, "full": False}
    f = next(f for f in report.findings if f.kind == "host_sync")
    assert f.details.seen_in == "split_op" and f.line == marker_line(TARGET, "MARK:split_call")
    assert f.details.eager_under == ("tc_piecewise", "breakable")
    assert "not under full" in f.message and f"layers.py:{marker_line(TARGET, 'MARK:split_sync')}" in f.message  # the kernel's line
    assert report.capturable and not report.all_capturable  # breakable (the prefill default) ✓, full ✗
    assert report.summary.backend == "breakable" and report.summary.verdict.startswith("full: ")
    assert all(not b.captured for b in report.summary.backends)  # the CPU predicts; capture needs a GPU


def test_a_split_op_is_no_break_point_of_breakable_by_itself(tmp_path):
    """sglang's breakable cuts only at @eager_on_graph calls: a split op that no break point runs (as sglang's
    inplace_all_reduce) is captured into the segment, and a host read in it fails breakable too."""
    copy = tmp_path / "layers.py"
    copy.write_text(open(TARGET).read().replace('BREAK_OPS = ["pcgb::attention", "pcgb::scaled"]', "BREAK_OPS = []"))
    from pcg_inspect.pipeline import run

    report = run(TraceOptions(target=f"{copy}:make_split_sync", sizes=(8, 16), backends=("all",),
                              sglang_split_ops=False)).report
    assert _verdicts(report) == {"tc_piecewise": True, "breakable": False, "full": False}
    f = next(f for f in report.findings if f.kind == "host_sync")
    assert f.details.eager_under == ("tc_piecewise",) and "not under breakable or full" in f.message
    assert f.fix == 'BREAK_OPS = ["pcgb::attention"]  # sglang: call it from an @eager_on_graph function'
    assert not report.capturable  # the engine's default (breakable) fails


def test_a_split_op_host_read_is_no_finding_when_only_tc_piecewise_is_judged():
    report = _trace("make_split_sync", backends=("tc_piecewise",))
    assert not [f for f in report.findings if f.kind == "host_sync"] and report.capturable


def test_a_dynamo_graph_break_blocks_only_tc_piecewise():
    report = _trace("make_dynamo_only")
    assert _verdicts(report) == {"tc_piecewise": False, "breakable": True, "full": True}
    assert report.problems("breakable") == [] and report.problems("tc_piecewise")
    assert report.summary.verdict.startswith("tc_piecewise: graph break (side_effect)")


def test_the_default_judges_the_engines_default_and_tc_piecewise_and_capturable_is_the_default():
    report = _trace("make_dynamo_only", backends=())
    assert report.environment.backends == ("tc_piecewise", "breakable") and report.environment.phase == "prefill"
    assert report.summary.backend == "breakable" and report.capturable and not report.all_capturable
    from pcg_inspect.report import exit_code

    assert exit_code(report) == 1  # the exit code follows every backend judged
    decode = run_trace(f"{TARGET}:make_dynamo_only", phase="decode")
    assert decode.environment.backends == ("tc_piecewise", "full") and decode.summary.backend == "full"
    only = _trace("make_dynamo_only", backends=("tc_piecewise",))
    assert only.summary.backend == "" and not only.capturable  # the default not judged: capturable is every backend's
    assert only.summary.verdict.startswith("graph break (side_effect)")  # one backend: no prefix


_TRACED = {}


def run_trace(target, **options):
    """A trace as a user's runs, in a supervised child (an in-process run of these file targets once in a few suites
    lost its custom op's schema between two traces, a cross-test interaction no user path has), shared by the tests
    that ask for the same one."""
    from pcg_inspect import run as runner

    key = (target, tuple(sorted(options.items())))
    if key not in _TRACED:
        _TRACED[key] = runner.trace(TraceOptions(target=target, sizes=(8, 16), sglang_split_ops=False, **options))
    return _TRACED[key]


def test_a_break_fed_a_per_call_python_value_is_stale_under_breakable_at_its_line():
    report = _trace("make_stale_break")
    (f,) = [f for f in report.findings if f.kind == "stale_break_arg"]
    assert f.line == marker_line(TARGET, "MARK:stale_break") and f.op == "pcgb.scaled"
    assert f.details.reason == "python_value" and f.details.argument == "arg1" and f.details.seen == "predicted"
    assert int(f.details.now) == int(f.details.captured) + 1  # the counter moved between the two calls
    assert "breakable" in __import__("pcg_inspect.kinds", fromlist=["x"]).blocked_backends(f)
    assert not _verdicts(report)["breakable"]


def test_breakable_specific_classes_on_their_targets():
    """A tensor rebuilt outside the static buffers each call (stale), a break returning a Python value that the
    rest uses (baked), an output whose structure changes with the size: each at its line, each blocking the
    backends it breaks and no other."""
    from pcg_inspect.kinds import blocked_backends

    t = str(TARGETS / "breakable.py")
    stale = run_trace(f"{t}:make_foreign_tensor", backends=("all",))
    (f,) = [f for f in stale.findings if f.kind == "stale_break_arg"]
    assert f.details.reason == "foreign_tensor" and f.line == marker_line(t, "MARK:foreign_call")
    assert blocked_backends(f) == ("breakable",) and not _verdicts(stale)["breakable"]
    shape = run_trace(f"{t}:make_structure", backends=("all",))
    (g,) = [f for f in shape.findings if f.kind == "output_structure"]
    assert blocked_backends(g) == ("breakable", "full") and g.details.sizes == (8, 16)
    assert "tuple(" in g.message and _verdicts(shape) == {"tc_piecewise": True, "breakable": False, "full": False}
    fixed = run_trace(f"{t}:make_static_step", backends=("all",))  # the same break, reading a static buffer
    assert not [f for f in fixed.findings if f.kind in ("stale_break_arg", "baked_break_output")]
    assert fixed.all_capturable, fixed.to_text()


def test_the_cli_prints_a_verdict_per_backend_labels_findings_and_writes_them_in_json(tmp_path):
    out = tmp_path / "r.json"
    res = subprocess.run([sys.executable, "-m", "pcg_inspect", "trace", f"{TARGET}:make_split_sync", "--backend", "all",
                          "--tokens", "8,16", "--no-sglang-split-ops", "--json", str(out)],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 1, res.stderr[-2000:]
    assert "✓ CAPTURABLE under breakable (sglang's prefill default) · ✗ NOT under full" in res.stdout
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
                                            ("full,breakable", ("breakable", "full")), ("", ())])
def test_backend_spellings(text, expected):
    from pcg_inspect.options import parse_backends

    assert parse_backends(text) == expected


def test_sglangs_own_eager_on_graph_functions_are_break_points():
    """A target decorated with sglang 0.5.23's own @eager_on_graph: its calls are found as break points without any
    declaration; a host read inside one is eager under breakable (and fails full); a Python value it returns is
    baked; a per-call value passed to it is stale. Dynamo itself cannot trace the decorator (ContextVar.get): under
    tc_piecewise it is a graph break, as it is in the engine."""
    pytest.importorskip("sglang.srt.model_executor.runner_backend_utils.breakable_cuda_graph")
    t = str(TARGETS / "breakable_sglang.py")
    sync = run_trace(f"{t}:make_sync", backends=("all",))
    assert _verdicts(sync) == {"tc_piecewise": False, "breakable": True, "full": False}
    (f,) = [f for f in sync.findings if f.kind == "host_sync"]
    assert f.line == marker_line(t, "MARK:eog_sync") and f.details.eager_under == ("breakable",)
    assert any(b.category == "unsupported_python" for b in sync.graph_breaks)
    count = run_trace(f"{t}:make_count", backends=("breakable",))
    (g,) = [f for f in count.findings if f.kind == "baked_break_output"]
    assert g.op == "count" and g.line == marker_line(t, "MARK:count_call") and g.details.reason == "returned_value"
    stale = run_trace(f"{t}:make_stale", backends=("breakable",))
    (h,) = [f for f in stale.findings if f.kind == "stale_break_arg"]
    assert h.op == "Stale.scaled" and h.line == marker_line(t, "MARK:stale_call") and h.details.argument == "arg1"
