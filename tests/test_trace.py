"""trace + analyze on real Dynamo: each break category at its exact line, dedup, hard errors."""

import pytest

from conftest import TARGETS, marker_line, traced

BREAKS = str(TARGETS / "breaks.py")


@pytest.mark.parametrize(
    "factory, category, marker, gb_id",
    [
        ("make_data_ptr", "data_ptr", "BREAK:data_ptr", "GB5976"),
        ("make_missing_fake", "missing_fake_impl", "BREAK:missing_fake_impl", "GB0090"),
        ("make_data_dependent", "data_dependent", "BREAK:data_dependent", "GB0170"),
        ("make_side_effect", "side_effect", "BREAK:side_effect", None),
        ("make_opaque", "host_call", "BREAK:host_call", None),
    ],
)
def test_each_category_at_its_line(factory, category, marker, gb_id):
    report = traced(f"{BREAKS}:{factory}")
    assert len(report.graph_breaks) == 1, report.graph_breaks
    b = report.graph_breaks[0]
    assert b.category == category
    assert b.file == BREAKS
    assert b.line == marker_line(BREAKS, marker)
    assert b.code and b.code in open(BREAKS).read().splitlines()[b.line - 1]
    assert b.hint
    if gb_id:  # ids come from the running torch's registry (GB5976 on 2.13 is GB0023 on 2.11)
        from pcg_inspect._torch_compat import graph_break_id

        assert b.gb_id.startswith("GB") and b.gb_id == graph_break_id(b.gb_type)[0]
        assert b.doc_url.endswith(".html")
    assert report.verdict_for("tc_piecewise").capturable is False and not report.all_capturable
    assert report.summary.num_graph_breaks == 1


def test_data_ptr_fix_is_pasteable():
    b = traced(f"{BREAKS}:make_data_ptr").graph_breaks[0]
    assert b.fix == "if not torch.compiler.is_compiling() and (src.data_ptr() == dst.data_ptr()):"
    compile(b.fix + "\n    pass\n", "<fix>", "exec")


def test_nested_break_is_deduplicated():
    # Dynamo logs the data_ptr break while inlining Rope into DataPtr.forward and again for Rope's own frame.
    b = traced(f"{BREAKS}:make_data_ptr").graph_breaks[0]
    assert b.occurrences >= 2
    assert [f.function for f in b.user_stack if f.is_user] == ["forward", "forward"]
    assert b.capture_sizes == (1, 8)


def test_all_categories_in_one_run():
    report = traced(f"{BREAKS}:make_all")
    cats = [b.category for b in report.graph_breaks]
    assert sorted(cats) == sorted(["data_ptr", "missing_fake_impl", "data_dependent", "side_effect"])
    lines = {b.category: b.line for b in report.graph_breaks}
    assert lines["data_ptr"] == marker_line(BREAKS, "BREAK:data_ptr")
    assert lines["side_effect"] == marker_line(BREAKS, "BREAK:side_effect")


def test_custom_op_without_fake_is_reported_not_raised():
    report = traced(f"{BREAKS}:make_custom_op_no_fake")
    line = marker_line(BREAKS, "BREAK:custom_op_no_fake")
    (b,) = report.graph_breaks
    assert b.fatal and b.category == "missing_fake_impl" and b.line == line
    errors = [f for f in report.findings if f.severity == "error"]
    assert sorted((f.kind, f.line) for f in errors) == [("dynamo_error", line), ("unregistered_op", line)]
    assert report.summary.num_findings["error"] == 2


def test_clean_module_is_capturable_with_zero_one_warning():
    report = traced(f"{BREAKS}:make_clean")
    assert report.summary.capturable and not report.graph_breaks
    # maybe_mark_dynamic: largest size first gives a dynamic graph, T=1 recompiles (0/1 specialisation)
    assert len(report.graphs) == 2
    assert report.graphs[0].capture_sizes == (8,) and report.graphs[1].capture_sizes == (1,)
    (f,) = report.findings
    assert f.kind == "shape_specialization" and f.details.cause == "zero_one"


def test_unbacked_marking_avoids_zero_one_recompile():
    report = traced(f"{BREAKS}:make_clean", dynamic="unbacked")
    assert len(report.graphs) == 1 and report.graphs[0].capture_sizes == (1, 8)
    assert not report.recompiles


def test_python_state_guard_points_at_the_mutation():
    report = traced(f"{BREAKS}:make_stepper")
    kinds = {f.kind: f for f in report.findings}
    f = kinds["python_state_guard"]
    assert f.line == marker_line(BREAKS, "RECOMPILE:python_state_guard")
    assert "step" in f.details.guard
    assert report.recompiles and all(rc.reasons for rc in report.recompiles)


def test_guards_grouped_by_type():
    report = traced(f"{BREAKS}:make_clean")
    gs = report.guards[0]
    counts = gs.count_by_type()
    assert counts.get("TENSOR_MATCH", 0) >= 1
    assert gs.graph == 0 and gs.function == "forward"
    shape = [g for g in gs.guards if g.type == "SHAPE_ENV"]
    assert shape and "size()[0]" in shape[0].code


def test_constraint_violation_is_explained_at_the_specialising_line():
    from conftest import TARGETS

    path = str(TARGETS / "constraint.py")
    report = traced(f"{path}:make", sizes=(8, 16))
    (b,) = report.graph_breaks
    assert b.fatal and b.file == path and b.line == marker_line(path, "MARK:specialised")
    assert "input `x` dim 0 was marked dynamic" in b.hint and "specialised it to 8" in b.hint
