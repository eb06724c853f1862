"""Real transformers decoder layers from bundled configs, shrunk for the CPU."""

from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from typer.testing import CliRunner  # noqa: E402

from pcg_inspect.cli import app  # noqa: E402
from pcg_inspect.models import ModelOptions, apply_overrides, bundled, is_model_spec, make_factory, parse_layers  # noqa: E402
from pcg_inspect.options import ModelOptions, TraceOptions
from pcg_inspect.pipeline import run as run_trace  # noqa: E402

SMALL = ("hidden_size=128", "intermediate_size=256", "vocab_size=512", "num_attention_heads=4")
SHRINK = {
    "llama3-8b": SMALL + ("num_key_value_heads=2",),
    "qwen3-8b": SMALL + ("num_key_value_heads=2", "head_dim=32"),
    "qwen3-30b-a3b": SMALL + ("num_key_value_heads=2", "head_dim=32", "num_experts=4", "num_experts_per_tok=2", "moe_intermediate_size=64"),
    "deepseek-v3": SMALL + ("num_key_value_heads=4", "n_routed_experts=4", "num_experts_per_tok=2", "moe_intermediate_size=64",
                            "first_k_dense_replace=0", "kv_lora_rank=32", "q_lora_rank=48", "qk_nope_head_dim=16",
                            "qk_rope_head_dim=8", "v_head_dim=16", "n_group=2", "topk_group=1"),
}


def _trace(name, sizes=(16, 24, 1), **kw):
    return run_trace(TraceOptions(target=name, sizes=sizes, model=ModelOptions(overrides=SHRINK[name], **kw))).report


@pytest.mark.parametrize("name", sorted(SHRINK))
def test_layer_is_cut_at_attention_and_replays(name):
    r = _trace(name)
    assert not r.graph_breaks, r.graph_breaks
    assert r.split_ops == ("pcg_inspect.attention",)
    # maybe_mark_dynamic, largest first: one dynamic graph for 24/16, one for the 0/1 specialisation at T=1
    assert [g.capture_sizes for g in r.graphs] == [(16, 24), (1,)]
    for g in r.graphs:
        kinds = [p.is_split for p in r.pieces if p.graph == g.index]
        assert kinds == [False, True, False]
    (f,) = r.findings
    assert f.kind == "shape_specialization" and f.details.cause == "zero_one"
    assert r.replay.status == "ok"


def test_split_attention_matches_the_models_own_attention():
    outs = {}
    for attn in ("split", "sdpa"):
        factory, _ = make_factory("qwen3-8b", ModelOptions(attn=attn, overrides=SHRINK["qwen3-8b"]))
        model, args = factory(tokens=12)
        with torch.no_grad():
            outs[attn] = model(*args)
    torch.testing.assert_close(outs["split"], outs["sdpa"], rtol=1e-4, atol=1e-4)


def test_eager_experts_loop_breaks_at_its_line_in_transformers():
    r = run_trace(TraceOptions(target="qwen3-30b-a3b", sizes=(16, 8), replay=False,
                               model=ModelOptions(overrides=SHRINK["qwen3-30b-a3b"] + ("_experts_implementation=eager",)))).report
    assert r.graph_breaks
    assert all(b.file.endswith("modeling_qwen3_moe.py") for b in r.graph_breaks)
    assert "data_dependent" in {b.category for b in r.graph_breaks}


def test_two_layers_and_whole_model():
    r = _trace("llama3-8b", sizes=(8,), layers="0-1")
    assert sum(p.is_split for p in r.pieces) == 2
    r = run_trace(TraceOptions(target="llama3-8b", sizes=(8,), model=ModelOptions(num_layers=2, overrides=SHRINK["llama3-8b"]))).report
    assert sum(p.is_split for p in r.pieces) == 2 and not r.graph_breaks


def test_specs_and_overrides():
    assert set(bundled()) >= {"llama3-8b", "qwen3-8b", "qwen3-30b-a3b", "mixtral-8x7b", "deepseek-v3", "gemma3-12b", "gpt-oss-20b", "glm5"}
    assert is_model_spec("llama3-8b") and is_model_spec("Qwen/Qwen3-8B") and not is_model_spec("x.py:make")
    cfg = apply_overrides({"a": 1}, ["a=2", "b=true", "c=text", "d.e=3"])
    assert cfg == {"a": 2, "b": True, "c": "text", "d": {"e": 3}}
    assert parse_layers("0-2,5") == [0, 1, 2, 5]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["trace", "nobody/no-such-model-xyz"], "no config.json for 'nobody/no-such-model-xyz'"),
        (["trace", "llama3-8b", "--layers", "99"], "out of range"),
        (["trace", "llama3-8b", "--attn", "flash"], "--attn must be"),
        (["trace", "llama3-8b", "--override", "nonsense"], "--override expects key=value"),
    ],
)
def test_model_bad_input(args, needle):
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and needle in res.output, res.output


def test_models_and_ops_commands():
    res = CliRunner().invoke(app, ["models"])
    assert res.exit_code == 0 and "deepseek-v3" in res.output and "glm5" in res.output
    res = CliRunner().invoke(app, ["ops", "-n", "pcg_inspect"])
    assert "pcg_inspect.attention" in res.output and res.exit_code == 0


def test_findings_on_a_model_target_point_at_the_models_code_not_ours():
    """The 0/1 recompile happens in pcg-inspect's wrapper frame: it is reported at the decoder layer's forward."""
    import pcg_inspect

    r = _trace("llama3-8b", (1, 8))
    own = str(Path(pcg_inspect.__file__).resolve().parent)
    located = [x for x in (*r.findings, *r.recompiles) if x.file]
    assert located, "expected the 0/1 specialisation at T=1"
    assert not [x for x in located if str(Path(x.file).resolve()).startswith(own)], [(x.file, x.line) for x in located]
    assert any(x.file.endswith("modeling_llama.py") and x.function == "LlamaDecoderLayer.forward" for x in located), \
        [(x.file, x.function) for x in located]


def test_identical_pieces_of_repeated_layers_are_counted_once():
    """Four Llama layers cut at attention: the first piece (embedding, layer 0 up to attention), three identical
    middle pieces (a layer's output half and the next layer's input half) and the last: 5 captured, 3 distinct."""
    r = run_trace(TraceOptions(target="llama3-8b", sizes=(8, 16), replay=False, observe_ops=False,
                               model=ModelOptions(num_layers=4, overrides=SHRINK["llama3-8b"]))).report
    captured = [p for p in r.pieces if not p.is_split]
    assert [p.index for p in captured] == [0, 2, 4, 6, 8]
    digests = [p.structure for p in captured]
    assert digests[1] == digests[2] == digests[3] and len({digests[0], digests[1], digests[4]}) == 3
    assert r.summary.num_distinct_pieces == 3
    two = run_trace(TraceOptions(target="llama3-8b", sizes=(8, 16), replay=False, observe_ops=False,
                                 model=ModelOptions(num_layers=2, overrides=SHRINK["llama3-8b"]))).report
    assert two.summary.num_distinct_pieces == 3  # first, middle, last: the same three graphs at any depth
