"""One options record crosses every process boundary whole: round trip, diff sides and ranks get every option."""

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from pcg_inspect.cli import app
from pcg_inspect.errors import UsageError
from pcg_inspect.options import ModelOptions, TraceOptions

SHRINK = ("hidden_size=64", "intermediate_size=128", "num_attention_heads=4", "num_key_value_heads=2", "vocab_size=128")


def test_round_trip_keeps_every_field():
    opts = TraceOptions(target="llama3-8b", capture_sizes=(16, 2), split_ops=("a::b",), device="cuda:1", dtype="bf16",
                        dynamic="unbacked", replay=False, isolate=True, use_sglang_split_ops=False, observe_ops=False,
                        model=ModelOptions("0-1", 0, "sdpa", SHRINK), nproc=2, timeout_s=12.5, command="x")
    data = json.loads(json.dumps(opts.to_dict()))
    assert TraceOptions.from_dict(data) == opts
    # every field differs from its default above, so none can be dropped silently
    defaults = TraceOptions(target="")
    assert all(getattr(opts, f.name) != getattr(defaults, f.name) for f in dataclasses.fields(TraceOptions))
    with pytest.raises(UsageError, match="unknown trace option"):
        TraceOptions.from_dict({**data, "layres": "0"})


def test_diff_sides_are_traced_with_every_option(tmp_path):
    """The bug: diff rebuilt a CLI argv that dropped --override (and rejected model options)."""
    from pcg_inspect import run as runner

    opts = TraceOptions(target="", capture_sizes=(8,), replay=False, model=ModelOptions(overrides=SHRINK))
    report = runner.side("llama3-8b", opts)
    assert report.graphs and any(s.startswith("[1, s") and s.endswith(", 64] f32") or ", 64]" in s for s in report.graphs[0].input_shapes), \
        report.graphs[0].input_shapes
    out = tmp_path / "d.json"
    args = ["diff", "llama3-8b", "llama3-8b", "--tokens", "8", "--no-replay", "--json", str(out), "--format", "json"]
    for o in SHRINK:
        args += ["--override", o]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["regressed"] is False


def test_ranks_and_their_reference_get_the_model_options(tmp_path):
    """The bug: the single-rank reference was built without --override (another model)."""
    out = tmp_path / "tp.json"
    args = ["trace", "llama3-8b", "--nproc", "2", "--tokens", "8", "--no-replay", "--json", str(out), "--quiet"]
    for o in SHRINK:
        args += ["--override", o]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert [r["environment"]["rank"] for r in data["ranks"]] == [0, 1]
    assert not [f for f in data["findings"] if f["kind"] in ("tp_mismatch", "rank_divergence")], data["findings"]
    for r in data["ranks"]:
        assert any(", 64]" in s for s in r["graphs"][0]["input_shapes"])


def test_model_options_on_a_file_target_are_refused():
    from conftest import TARGETS

    res = CliRunner().invoke(app, ["trace", f"{TARGETS / 'breaks.py'}:make_clean", "--override", "hidden_size=8"])
    assert res.exit_code == 2 and "apply to model targets only" in res.output
