"""Against real sglang code: its split_graph gives our pieces; its registry feeds our split ops.

CI installs sglang's compilation pieces (see .ci/run). sglang.srt.compilation.backend imports
weak_ref_tensor, which raises on CPU at import: a test-only stub stands in for it here.
"""

import sys
import types

import pytest

pytest.importorskip("sglang.srt.compilation.compilation_config")

from conftest import EXAMPLES, TARGETS  # noqa: E402
from pcg_inspect.options import ModelOptions, TraceOptions
from pcg_inspect.pipeline import run as run_trace  # noqa: E402
from pcg_inspect.split import split_graph as our_split_graph  # noqa: E402


def _sglang_split_graph():
    name = "sglang.srt.model_executor.runner_backend_utils.weak_ref_tensor"
    if name not in sys.modules:
        stub = types.ModuleType(name)
        stub.weak_ref_tensor = lambda t: t
        stub.weak_ref_tensors = lambda t: t
        sys.modules[name] = stub
    from sglang.srt.compilation.backend import split_graph

    return split_graph


def _calls(gm):
    return [n.name for n in gm.graph.nodes if n.op not in ("placeholder", "output")]


SPECS = [
    (f"{EXAMPLES / 'nsa_indexer' / 'after.py'}:make", {}),
    (f"{TARGETS / 'stack.py'}:make", {}),
    (f"{TARGETS / 'sglang_layer.py'}:make", {}),
    ("llama3-8b", {"model": ModelOptions(overrides=("hidden_size=64", "intermediate_size=128", "num_attention_heads=4",
                                                    "num_key_value_heads=2", "vocab_size=128"), layers="0-1")}),
]


@pytest.mark.parametrize("spec, extra", SPECS, ids=["nsa_after", "stack", "sglang_ops", "llama_2_layers"])
def test_our_split_equals_sglangs(spec, extra):
    sglang_split = _sglang_split_graph()
    run = run_trace(TraceOptions(target=spec, sizes=(8,), replay=False, **extra))
    ops = list(run.report.split_ops)
    assert ops
    gm = run.trace.graphs[0].gm
    # sglang matches str(node.target) exactly: give it both spellings Dynamo may record
    sglang_ops = ops + [f"{o}.default" for o in ops]
    _, theirs = sglang_split(gm, sglang_ops)
    _, ours = our_split_graph(gm, ops)
    assert [(i.submod_name, i.graph_id, i.is_splitting_graph) for i in theirs] == [
        (i.submod_name, i.graph_id, i.is_split) for i in ours
    ]
    assert [_calls(i.graph) for i in theirs] == [_calls(i.module) for i in ours]
    reported = [(p.index, p.is_split) for p in run.report.pieces if p.graph == 0]
    assert reported == [(i.graph_id, i.is_splitting_graph) for i in theirs]


def test_sglang_registry_feeds_split_ops_and_ops_audit():
    from typer.testing import CliRunner

    from pcg_inspect.cli import app

    run = run_trace(TraceOptions(target=f"{TARGETS / 'sglang_layer.py'}:make", sizes=(8,)))
    r = run.report
    assert "sglang.pcg_test_attention" in r.split_ops
    assert r.environment.sglang_version
    assert sum(p.is_split for p in r.pieces if p.graph == 0) == 2
    assert r.replay.status == "ok"
    import json

    res = CliRunner().invoke(app, ["ops", "-n", "sglang", "--json"])
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    row = rows["sglang.pcg_test_attention"]
    assert row["mutates"] == ["out"] and row["is_split"] and row["has_fake"]


def test_no_sglang_split_ops_flag():
    r = run_trace(TraceOptions(target=f"{TARGETS / 'sglang_layer.py'}:make", sizes=(8,),
                               replay=False, sglang_split_ops=False)).report
    assert "sglang.pcg_test_attention" not in r.split_ops


def test_fixes_use_sglang_helpers_when_sglang_is_there(tmp_path):
    from pcg_inspect.analyze.ops import wrapper_for_call

    code = "h = flashinfer.norm.rmsnorm(h, self.weight, eps=1e-6)"
    fix = wrapper_for_call(code, sglang=True)
    assert "register_custom_op(mutates_args=[], fake_impl=_rmsnorm_fake)" in fix and "register_split_op" in fix
    compile(fix, "<fix>", "exec")
