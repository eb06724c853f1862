"""Findings on real modules: each kind at its line; negative controls; generated fixes that work."""

import dataclasses
import textwrap

import pytest
import torch

from conftest import EXAMPLES, TARGETS, marker_line, traced
from pcg_inspect import kinds as registry
from pcg_inspect.catalog import catalog_markdown

FIND = str(TARGETS / "findings.py")


@pytest.mark.parametrize(
    "factory, kind, marker, op",
    [
        ("make_unregistered", "unregistered_op", "FIND:unregistered_op", "pcg_find_ext.head_rows"),
        ("make_lying_fake", "fake_impl_mismatch", "FIND:fake_impl_mismatch", "pcg_find.top16"),
        ("make_undeclared_mutation", "undeclared_mutation", "FIND:undeclared_mutation", "pcg_find_ext.store_into"),
        ("make_aliasing", "output_aliases_input", "FIND:output_aliases_input", "pcg_find_ext.flat_view"),
        ("make_library_call", "unregistered_op", "FIND:opaque_library_call", ""),
    ],
)
def test_each_kind_at_its_line(factory, kind, marker, op):
    report = traced(f"{FIND}:{factory}")
    found = [f for f in report.findings if f.kind == kind]
    assert len(found) == 1, report.findings
    f = found[0]
    assert f.severity == "error" and f.file == FIND and f.line == marker_line(FIND, marker)
    assert f.op == op and f.hint
    assert not report.verdict_for("tc_piecewise").capturable and not report.all_capturable


def test_observed_fake_impls_follow_input_dims():
    f = next(f for f in traced(f"{FIND}:make_unregistered").findings if f.kind == "unregistered_op")
    assert "return x.new_empty((x.shape[0], k))" in f.fix  # [T, k] observed at two sizes
    f = next(f for f in traced(f"{FIND}:make_lying_fake").findings if f.kind == "fake_impl_mismatch")
    assert "[8, 8]" in f.message and "[8, 16]" in f.message
    assert "new_empty((scores.shape[0], 16), dtype=torch.int64)" in f.fix


def test_undeclared_mutation_names_the_argument():
    f = next(f for f in traced(f"{FIND}:make_undeclared_mutation").findings if f.kind == "undeclared_mutation")
    assert "cache" in f.message and "mutates_args=('cache',)" in f.hint
    assert f.details.mutated == ("cache",) and f.details.declared_mutable == ()


def test_before_example_lists_both_extension_ops_with_exact_fakes():
    report = traced(f"{EXAMPLES / 'nsa_indexer' / 'before.py'}:make", sizes=(1, 8, 64))
    ops = {f.op: f for f in report.findings if f.kind == "unregistered_op"}
    assert set(ops) == {"nsa_ext.store_k_cache", "nsa_ext.topk_indices"}
    assert "return scores.new_empty((scores.shape[0], k), dtype=torch.int32)" in ops["nsa_ext.topk_indices"].fix
    assert "return None" in ops["nsa_ext.store_k_cache"].fix


def test_controls_have_no_error_findings():
    # after.py: a correctly declared mutating op, a faithful fake, data_ptr behind is_compiling()
    report = traced(f"{EXAMPLES / 'nsa_indexer' / 'after.py'}:make", sizes=(1, 8, 64))
    assert not [f for f in report.findings if f.severity == "error"]
    (dp,) = [f for f in report.findings if f.kind == "data_ptr"]
    assert dp.severity == "info" and "is_compiling" in dp.code


def test_data_ptr_in_branch_not_taken_is_a_warning():
    report = traced(f"{FIND}:make_unreached_data_ptr")
    (f,) = [f for f in report.findings if f.kind == "data_ptr"]
    assert f.severity == "warning" and f.line == marker_line(FIND, "FIND:data_ptr_unreached")
    assert report.summary.capturable  # a warning does not block capture


def test_generated_fake_impl_compiles_and_removes_the_break(tmp_path):
    from pcg_inspect.options import TraceOptions
    from pcg_inspect.pipeline import run as run_trace

    target = tmp_path / "fixme.py"
    target.write_text(textwrap.dedent('''
        import torch, torch.nn as nn
        _lib = torch.library.Library("pcg_fixtest", "DEF")
        _lib.define("pick(Tensor x, int k) -> Tensor")

        @torch.compiler.disable
        def _pick(x, k):
            return x[:, :k].contiguous() * 2

        _lib.impl("pick", _pick, "CPU")

        class M(nn.Module):
            def forward(self, x):
                return torch.ops.pcg_fixtest.pick(x, 3) + 1

        def make(tokens: int = 8):
            return M(), (torch.randn(tokens, 8),)
    '''))
    spec = f"{target}:make"
    first = run_trace(TraceOptions(target=spec, sizes=(1, 8), replay=False)).report
    assert [b.category for b in first.graph_breaks] == ["missing_fake_impl"]
    fix = next(f.fix for f in first.findings if f.kind == "unregistered_op")
    exec(compile(fix, "<generated fix>", "exec"), {"torch": torch})  # the user pastes it
    second = run_trace(TraceOptions(target=spec, sizes=(1, 8), replay=False)).report
    assert not second.graph_breaks and not [f for f in second.findings if f.severity == "error"]
    # and fullgraph=True (sglang's setting) compiles, with the eager result
    from pcg_inspect.load import load

    t = load(spec, (8,))
    x = t.calls[0].args[0]
    torch._dynamo.reset()
    compiled = torch.compile(t.module, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), t.module(x))


def test_generated_wrapper_for_library_call_traces_fullgraph():
    import sys

    from pcg_inspect.analyze.ops import wrapper_for_call

    f = next(f for f in traced(f"{FIND}:make_library_call").findings if f.kind == "unregistered_op")
    assert "jitlib.fused_scale(x, scale=scale)" in f.fix
    f = dataclasses.replace(f, fix=wrapper_for_call(f.code))  # the plain-torch variant (sglang may be installed)
    assert "fused_scale_op(x, scale=2.0)" in f.fix  # the call site to paste
    import jitlib  # noqa: F401  (on sys.path through the target)

    ns = {"torch": torch, "jitlib": sys.modules["jitlib"]}
    exec(compile(f.fix.replace("mylib::", "pcg_wraptest::"), "<generated wrapper>", "exec"), ns)
    op = ns["fused_scale_op"]

    def forward(x):
        return op(x, scale=2.0) + 1

    x = torch.randn(4, 8)
    torch._dynamo.reset()
    torch.testing.assert_close(torch.compile(forward, backend="eager", fullgraph=True)(x), x * 2 + 1)


def test_catalog_doc_is_generated_from_code():
    from conftest import ROOT

    assert (ROOT / "docs" / "findings.md").read_text() == catalog_markdown()
    for kind in ("unregistered_op", "fake_impl_mismatch", "undeclared_mutation", "output_aliases_input",
                 "data_ptr", "shape_specialization", "python_state_guard", "recompile", "split_output_address"):
        assert registry.known(kind)


def test_explain_cli():
    from typer.testing import CliRunner

    from pcg_inspect.cli import app

    r = CliRunner().invoke(app, ["--explain", "fake_impl_mismatch"])
    assert r.exit_code == 0 and "Fake impl that lies" in r.output
    r = CliRunner().invoke(app, ["explain", "nope"])
    assert r.exit_code == 2 and "unknown kind" in r.output
