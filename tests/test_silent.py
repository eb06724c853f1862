"""Silent wrong output (issue #23): layers that capture fine and compute the wrong thing, each found at its line.

Each target here passed as capturable/ok before these checks; each test asserts the finding, its line and cause, and
that the replay is not called ok where the output cannot be trusted. Negative controls keep the checks honest.
"""

import math

import pytest

from conftest import TARGETS, marker_line, traced

SILENT = TARGETS / "silent"
SIZES = (8, 16)


def _trace(name):
    return traced(f"{SILENT / name}.py:make", sizes=SIZES)


def _one(report, kind):
    found = [f for f in report.findings if f.kind == kind]
    assert len(found) == 1, [(f.kind, f.message) for f in report.findings]
    return found[0]


def _at(finding, name, marker):
    path = str(SILENT / f"{name}.py")
    assert (finding.file, finding.line) == (path, marker_line(path, marker)), (finding.file, finding.line, finding.message)


def test_an_op_that_reads_a_python_counter_is_host_state_and_its_replay_is_not_ok():
    report = _trace("host_state")
    f = _one(report, "host_state")
    _at(f, "host_state", "reads host state")  # the kernel's own line, not the call
    assert f.severity == "error" and f.details.cause == "host_state" and "in the kernel of pcgs::pick" in f.message
    assert report.replay.status != "ok"
    assert not report.summary.capturable


def test_a_random_op_on_a_generator_of_its_own_gets_the_rng_cause():
    f = _one(_trace("own_generator"), "host_state")
    _at(f, "own_generator", "draws from its own generator")
    assert f.details.cause == "rng" and "register_generator_state" in f.hint


def test_nan_is_a_finding_at_the_op_that_made_it_never_a_zero_error():
    report = _trace("non_finite")
    f = _one(report, "non_finite")
    _at(f, "non_finite", "log(0) at the maximum")
    assert f.op == "aten.log" and f.details.cause == "op"
    model = [s for s in report.replay.sizes]
    assert model and all(s.status != "ok" for s in model)
    assert all(math.isnan(s.max_abs_err) for s in model) and "holds NaN" in model[0].message


def test_a_parameter_rewritten_through_data_in_forward_is_reported():
    f = _one(_trace("param_data"), "param_data_mutation")
    _at(f, "param_data", "rewrites the parameter")
    assert f.details.parameters == ("weight",) and f.severity == "error"


def test_an_is_compiling_branch_that_drops_a_side_effect_is_compile_divergence():
    f = _one(_trace("divergence"), "compile_divergence")
    _at(f, "divergence", "skipped when compiled")
    assert f.details.effects == ("self.captured",) and f.details.is_compiling_branch
    assert "eager grew by 1, compiled unchanged" in f.message


def test_a_side_effect_kept_in_both_is_not_divergence():
    report = _trace("kept_effect")
    assert not [f for f in report.findings if f.kind in ("compile_divergence", "host_state")], report.findings


def test_a_fake_that_drops_a_schema_default_is_reported_at_the_fake_with_a_fix_that_keeps_it():
    f = next(f for f in _trace("fake_default").findings if f.kind == "fake_impl_mismatch")
    _at(f, "fake_default", "drops the default")
    assert "k=2" in f.message and f"fake_default.py:{marker_line(str(SILENT / 'fake_default.py'), 'omits k')}" in f.message
    assert "def _topk_rows_fake(x, k=2):" in f.fix


def test_the_token_dim_pinned_by_a_comparison_names_the_line_and_the_static_size():
    report = _trace("pinned")
    found = [f for f in report.findings if f.kind == "shape_specialization"]
    assert len(found) == 1, report.findings  # the pin explains the recompile: no second warning
    _at(found[0], "pinned", "pins the token dim")
    assert found[0].details.cause == "pinned" and found[0].details.capture_sizes == (16,)
    assert "symbolic at 8" in found[0].message


def test_torch_cond_on_a_device_predicate_in_a_captured_piece_is_a_host_sync():
    f = _one(_trace("cond"), "host_sync")
    _at(f, "cond", "a device predicate")
    assert f.details.cause == "cond"


def test_a_module_attribute_list_unrolled_into_the_graph_is_a_python_state_guard_without_a_recompile():
    report = _trace("list_guard")
    f = _one(report, "python_state_guard")
    _at(f, "list_guard", "unrolled into the graph")
    assert "self.scales (a list of length 2: [1.0, 0.5])" in f.message and f.severity == "warning"
    assert not report.recompiles


def test_an_op_with_torchs_automatic_fake_is_not_unregistered():
    report = _trace("auto_fake")
    assert not [f for f in report.findings if f.kind == "unregistered_op"] and report.summary.capturable


def test_a_fake_that_lies_about_strides_is_a_mismatch_with_both_layouts():
    from conftest import traced as trace_once

    report = trace_once(f"{TARGETS / 'dialects' / 'library.py'}:make", sizes=SIZES)
    f = next(f for f in report.findings if f.kind == "fake_impl_mismatch" and f.op == "pcgd_lib.colmajor")
    assert "strides (16, 1)" in f.message and "strides (1, 16)" in f.message
    assert "x.new_empty((x.shape[1], x.shape[0])).permute(1, 0)" in f.fix


@pytest.mark.parametrize("name", ["host_state", "non_finite"])
def test_fix_leaves_silent_output_for_the_user_with_the_decision(tmp_path, name):
    """No edit makes host state or NaN go away: fix lists them with what to decide."""
    import shutil

    from pcg_inspect import fix
    from pcg_inspect.options import TraceOptions

    shutil.copy(SILENT / f"{name}.py", tmp_path / f"{name}.py")
    changes, left = fix.plan(_trace(name), tmp_path / f"{name}.py")
    kind = {"host_state": "host_state", "non_finite": "non_finite"}[name]
    assert any(x.title.startswith(kind) and x.why for x in left), left
    assert TraceOptions  # imported for symmetry with the other fix tests
