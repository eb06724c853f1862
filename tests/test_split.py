"""split: sglang's node-to-piece rule, op-name spellings, piece records."""

import pytest
import torch

from conftest import TARGETS, traced
from pcg_inspect.errors import UsageError
from pcg_inspect.split import assign_pieces, normalise_op_name, split_graph, target_key

STACK = str(TARGETS / "stack.py")


def test_three_layer_stack_splits_at_attention():
    report = traced(f"{STACK}:make", split_ops=())  # the target's SPLIT_OPS
    main = [p for p in report.pieces if p.graph == 0]
    assert [p.is_split for p in main] == [False, True, False, True, False, True, False]
    assert [p.index for p in main] == list(range(7))
    assert all(p.ops == ("pcg_stack.attention",) for p in main if p.is_split)
    assert report.split_ops == ("pcg_stack.attention",)
    assert report.summary.num_pieces == len(report.pieces)


@pytest.mark.parametrize("name", ["pcg_stack::attention", "pcg_stack.attention", "pcg_stack.attention.default"])
def test_split_op_spellings_all_match(name):
    from pcg_inspect.options import TraceOptions
    from pcg_inspect.pipeline import run as run_trace

    # The stack's SPLIT_OPS would already split; trace a clean copy without it via --split-op alone.
    report = run_trace(
        TraceOptions(target=f"{STACK}:make", sizes=(8,), split_ops=(name,))
    ).report
    assert sum(p.is_split for p in report.pieces) == 3


def test_normalise_op_name():
    assert normalise_op_name("sglang::unified_attention_with_output") == "sglang.unified_attention_with_output"
    assert normalise_op_name("ns.op.default") == "ns.op"
    assert normalise_op_name("ns.op.out") == "ns.op.out"
    for bad in ("attention", "ns::", "a.b.c.d", "ns::op-x"):
        with pytest.raises(UsageError):
            normalise_op_name(bad)


def _toy_graph():
    import torch.fx as fx

    from conftest import TARGETS  # noqa: F401  (registers pcg_stack ops)
    import importlib.util

    spec = importlib.util.spec_from_file_location("_stack_for_split", STACK)
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except RuntimeError:
        pass  # already registered by another import of the file

    def f(q, k, v):
        out = torch.empty_like(q)
        torch.ops.pcg_stack.attention(q, k, v, out)  # packet: 'pcg_stack.attention'
        y = out * 2
        out2 = torch.empty_like(y)
        torch.ops.pcg_stack.attention.default(y, k, v, out2)  # overload: '...default'
        return out2 + 1

    gm = fx.symbolic_trace(f)
    return gm


def test_packet_and_overload_targets_both_split():
    gm = _toy_graph()
    keys = [target_key(n.target) for n in gm.graph.nodes if n.op == "call_function"]
    assert keys.count("pcg_stack.attention") == 2
    mapping = assign_pieces(gm, {"pcg_stack.attention"})
    split_ids = sorted({pid for n, pid in mapping.items() if target_key(n.target) == "pcg_stack.attention"})
    assert split_ids == [1, 3]
    split_gm, items = split_graph(gm, ["pcg_stack.attention"])
    assert [it.is_split for it in items] == [False, True, False, True, False]
    q, k, v = torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4)
    torch.testing.assert_close(split_gm(q, k, v), gm(q, k, v))
