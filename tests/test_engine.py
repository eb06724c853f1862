"""The verdict is the engine's: we trace what torch.compile(fullgraph=True) compiles, and report what it meets.

The oracle is torch itself: for every bundled example and test target, the graphs we capture equal
the graphs ``torch.compile(fullgraph=True)`` hands its backend (same node targets in order), and
where fullgraph=True raises, we report a graph break at that line with that graph-break type.
"""

import re
import traceback
from pathlib import Path

import pytest
import torch

from conftest import EXAMPLES, TARGETS
from pcg_inspect.frames import is_user_file
from pcg_inspect.load import load, tensor_at
from pcg_inspect.options import TraceOptions
from pcg_inspect.pipeline import run

EAGER_FAILS = {"make_wrong_shape"}  # the target raises eagerly: a target_error (tested below), not a break
NOT_TARGETS = {"make_raises", "make_wrong_type", "make_not_module_tuple", "make_module_only", "make_fixed"}


def _specs():
    files = [TARGETS / f for f in ("breaks.py", "findings.py", "replay_bad.py", "engine.py", "stack.py")]
    files += [EXAMPLES / "nsa_indexer" / "before.py", EXAMPLES / "nsa_indexer" / "after.py", EXAMPLES / "tp" / "layer.py"]
    out = []
    for path in files:
        for line in path.read_text().splitlines():
            if line[:1].isspace():
                continue  # top-level names only
            name = line.split("=")[0].split("(")[0].replace("def ", "").strip()
            if name.startswith("make") and name.isidentifier() and name not in NOT_TARGETS | EAGER_FAILS:
                out.append(f"{path}:{name}")
    kinds = re.findall(r"^    def case_(\w+)\(", (TARGETS / "engine.py").read_text(), re.M)  # generated factories
    out += [f"{TARGETS / 'engine.py'}:make_{k}" for k in kinds if f"make_{k}" not in EAGER_FAILS]
    return sorted(set(out))


def _fullgraph(spec):
    """The graphs torch.compile(fullgraph=True) hands its backend, marked as sglang marks token dims, and what it raised."""
    target = load(spec, (8,))
    call = target.calls[0]
    for path, dim in call.token_dims.items():
        torch._dynamo.maybe_mark_dynamic(tensor_at(call, path), dim)
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    try:
        with torch.no_grad():
            torch.compile(target.module, backend=backend, fullgraph=True)(*call.args, **call.kwargs)
        return graphs, None, target
    except Exception as exc:  # Unsupported, TorchRuntimeError: what the engine would die of
        return graphs, exc, target
    finally:
        torch._dynamo.reset()


def _nodes(gm):
    return [(n.op, str(n.target)) for n in gm.graph.nodes]


def _raised_at(exc, roots):
    stack = getattr(exc, "real_stack", None) or []
    frames = [(f.filename, f.lineno) for f in stack] or [(f.filename, f.lineno) for f in traceback.extract_tb(exc.__traceback__)]
    mine = [f for f in frames if is_user_file(f[0], roots)]
    return mine[-1] if mine else None


@pytest.mark.parametrize("spec", _specs(), ids=lambda s: f"{Path(s.split(':')[0]).stem}:{s.split(':')[1]}")
def test_our_graphs_are_the_fullgraph_graphs(spec):
    theirs, exc, target = _fullgraph(spec)
    ours = run(TraceOptions(target=spec, sizes=(8,), replay=False, observe_ops=False, sglang_split_ops=False))
    if exc is None:
        assert not ours.report.graph_breaks, ours.report.graph_breaks
        assert len(theirs) == 1  # our second call (the capture call) may recompile; the first graph is the one
        assert _nodes(ours.trace.graphs[0].gm) == _nodes(theirs[0])
        return
    where = _raised_at(exc, target.roots)
    assert where is not None, exc
    at_line = [b for b in ours.report.graph_breaks if (b.file, b.line) == where]
    assert at_line, f"fullgraph=True raised {type(exc).__name__} at {where}; we report {ours.report.graph_breaks}"
    gb_type = getattr(exc, "gb_type", None)
    if gb_type:
        assert gb_type in {b.gb_type for b in at_line}, (gb_type, [b.gb_type for b in at_line])
    else:
        assert any(b.fatal for b in at_line)  # Dynamo gave up on the frame (a custom op without fake impl)


def test_the_spec_list_is_not_empty():
    assert len(_specs()) > 40


# ---------------------------------------------------------------- what the engine meets, at its line

from conftest import marker_line, traced  # noqa: E402

ENGINE = str(TARGETS / "engine.py")
FIND = str(TARGETS / "findings.py")


def _engine(kind, prefix="make", sizes=(8, 16)):
    return traced(f"{ENGINE}:{prefix}_{kind}", sizes=sizes)


@pytest.mark.parametrize("kind, cause", [
    ("item_slice", "scalar"), ("nonzero", "dynamic_shape"), ("mask_index", "dynamic_shape"),
    ("repeat_interleave", "repeat_interleave"), ("tolist", "scalar"),
])
def test_host_sync_in_a_captured_piece_is_an_error_at_its_line_and_no_break(kind, cause):
    r = _engine(kind)
    assert not r.graph_breaks  # fullgraph=True compiles it: it stays in the graph as an unbacked size
    (f,) = [f for f in r.findings if f.kind == "host_sync"]
    assert f.severity == "error" and f.line == marker_line(ENGINE, f"MARK:{kind}")
    assert f.details.cause == cause and f.details.seen_in == "graph" and f.details.piece == 0
    assert "CUDA-graph capture of the piece then fails" in f.message and f.hint
    assert not r.capturable and r.verdict_for("breakable").verdict.startswith("host_sync")  # every backend captures it


def test_host_sync_inside_a_custom_ops_kernel_points_at_the_call_and_the_kernel_line():
    r = _engine("kernel_sync")
    (f,) = [f for f in r.findings if f.kind == "host_sync"]
    assert f.line == marker_line(ENGINE, "MARK:kernel_sync_call") and f.op == "pcg_engine.scale_by_max"
    assert f.details.seen_in == "custom_op" and f.details.inside_op == "pcg_engine.scale_by_max"
    assert f"engine.py:{marker_line(ENGINE, 'MARK:kernel_sync')}" in f.message  # the kernel's own line
    assert f.fix.startswith('SPLIT_OPS = ["pcg_engine::scale_by_max"]')


def test_host_sync_inside_a_split_op_is_fine_under_tc_piecewise_only():
    """A split op runs eagerly between tc_piecewise's pieces; sglang's breakable captures it unless an
    @eager_on_graph function (or a declared break op) runs it."""
    r = _engine("split_sync")
    (f,) = [f for f in r.findings if f.kind == "host_sync"]
    assert f.details.eager_under == ("tc_piecewise",) and f.details.seen_in == "split_op"
    assert r.verdict_for("tc_piecewise").capturable and not r.verdict_for("breakable").capturable
    only = run(TraceOptions(target=f"{ENGINE}:make_split_sync", sizes=(8, 16), backends=("tc_piecewise",),
                            sglang_split_ops=False)).report
    assert not [f for f in only.findings if f.kind == "host_sync"] and only.capturable


@pytest.mark.parametrize("kind, category", [
    ("print", "side_effect"), ("warn", "side_effect"), ("log", "side_effect"),
    ("deepcopy", "unsupported_python"), ("sorted", "unsupported_python"),
    ("fake_raises", "missing_fake_impl"), ("device_query", "host_call"), ("probe", "host_call"),
    ("data_ptr_arith", "data_ptr"),
])
def test_breaks_are_categorised_by_cause(kind, category):
    r = _engine(kind)
    b = next(b for b in r.graph_breaks if b.category == category)
    marker = "MARK:probe_import" if kind == "probe" else f"MARK:{kind}"
    assert b.line == marker_line(ENGINE, marker), (b.line, b.code)
    assert not [f for f in r.findings if f.kind == "unregistered_op"]  # never a custom-op wrapper around a builtin


def test_side_effect_fix_is_delete_or_guard_and_compiles():
    b = _engine("print").graph_breaks[0]
    assert b.fix == f"if not torch.compiler.is_compiling():\n    {b.code}" and b.code.startswith('print("tokens", x.shape[0])')
    compile(b.fix, "<fix>", "exec")
    assert "delete it" in b.hint


def test_host_call_advice_is_to_hoist_not_to_wrap():
    b = _engine("device_query").graph_breaks[0]
    assert "hoist" in b.hint and not b.fix


def test_fake_impl_that_raises_is_missing_fake_impl_at_the_call_line():
    b = _engine("fake_raises").graph_breaks[0]
    assert b.op == "pcg_engine.fake_raises" and "raises" in b.hint
    assert "return torch.empty_like(x)" in b.fix  # the body, from the shapes the eager run saw


def test_target_that_raises_eagerly_is_a_target_error_not_a_break():
    r = _engine("wrong_shape")
    assert not r.graph_breaks
    (f,) = [f for f in r.findings if f.kind == "target_error"]
    assert f.line == marker_line(ENGINE, "MARK:wrong_shape") and "mat1 and mat2 shapes" in f.message


def test_custom_op_with_automatic_fake_is_not_unregistered():
    r = _engine("noret")
    assert r.capturable and not [f for f in r.findings if f.severity == "error"]


def test_nothing_hides_behind_an_abandoned_frame():
    r = _engine("data_ptr_arith")
    assert [b.category for b in r.graph_breaks] == ["data_ptr"]
    (sync,) = [f for f in r.findings if f.kind == "host_sync"]
    assert sync.line == marker_line(ENGINE, "MARK:after_abandon") and sync.details.seen_in == "eager"


def test_buffer_assignment_at_the_assignment_line():
    r = _engine("buffer_assignment")
    (f,) = [f for f in r.findings if f.kind == "buffer_assignment"]
    assert f.severity == "error" and f.line == marker_line(ENGINE, "MARK:buffer_assignment")
    assert f.details.attribute == "cos_sin_cache" and f.details.is_buffer
    assert "cos_sin_cache = self.cos_sin_cache.to(x.dtype)" in f.hint


def test_overdeclared_mutation_warning_and_unknown_error():
    (w,) = [f for f in _engine("declared_unused").findings if f.kind == "overdeclared_mutation"]
    assert w.severity == "warning" and "scratch" in w.message and w.line == marker_line(ENGINE, "MARK:declared_unused")
    (e,) = [f for f in _engine("unknown_mut").findings if f.kind == "overdeclared_mutation"]
    assert e.severity == "error" and 'mutates_args="unknown"' in e.message and "mutates_args=()" in e.hint


def test_a_global_context_flag_is_a_python_state_guard_without_any_recompile():
    r = _engine("context_flag")
    assert not r.recompiles
    (f,) = [f for f in r.findings if f.kind == "python_state_guard"]
    assert f.severity == "warning" and "is_extend_in_batch" in f.message
    assert f.line == marker_line(ENGINE, "MARK:context_flag")


# Every target shape gets every check that needs the eager run, and a replay.
OBSERVED = [
    (FIND, "unregistered", "unregistered_op", "FIND:unregistered_op"),
    (FIND, "lying_fake", "fake_impl_mismatch", "FIND:fake_impl_mismatch"),
    (FIND, "undeclared_mutation", "undeclared_mutation", "FIND:undeclared_mutation"),
    (FIND, "aliasing", "output_aliases_input", "FIND:output_aliases_input"),
    (ENGINE, "declared_unused", "overdeclared_mutation", "MARK:declared_unused"),
    (ENGINE, "kernel_sync", "host_sync", "MARK:kernel_sync_call"),
    (ENGINE, "buffer_assignment", "buffer_assignment", "MARK:buffer_assignment"),
]


@pytest.mark.parametrize("shape", ["make", "fixed", "module"])
@pytest.mark.parametrize("path, name, kind, marker", OBSERVED, ids=[o[2] for o in OBSERVED])
def test_every_target_shape_gets_observation_findings(shape, path, name, kind, marker):
    r = traced(f"{path}:{shape}_{name}", sizes=(8, 16))
    found = [f for f in r.findings if f.kind == kind]
    assert found and found[0].line == marker_line(path, marker), r.findings
    expected_sizes = (6,) if shape == "fixed" else (8, 16)
    assert tuple(sorted(r.environment.capture_sizes)) == expected_sizes
    if not r.graph_breaks:
        assert r.replay is not None and {s.capture_size for s in r.replay.sizes} == set(expected_sizes)
    if shape == "fixed":
        assert any("takes no `tokens`" in w for w in r.warnings)
