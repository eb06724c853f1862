"""One options record crosses every process boundary whole: round trip, diff sides and ranks get every option."""

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from pcg_inspect.cli import app
from pcg_inspect.errors import UsageError
from pcg_inspect.options import ModelOptions, PlanOptions, TraceOptions, plan_declared

SHRINK = ("hidden_size=64", "intermediate_size=128", "num_attention_heads=4", "num_key_value_heads=2", "vocab_size=128")


def test_round_trip_keeps_every_field():
    opts = TraceOptions(target="llama3-8b", sizes=(16, 2), split_ops=("a::b",), device="cuda:1", dtype="bf16",
                        dynamic="unbacked", replay=False, isolate=True, sglang_split_ops=False, observe_ops=False,
                        model=ModelOptions("0-1", 0, "sdpa", SHRINK), nproc=2, timeout=12.5, command="x",
                        backends=("breakable", "full"), phase="decode", break_ops=("x::y",), plan_sample=3)
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

    opts = TraceOptions(target="", sizes=(8,), replay=False, model=ModelOptions(overrides=SHRINK))
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


def test_cli_api_and_pytest_options_are_derived_from_trace_options_with_the_same_defaults():
    """One declaration: every option has a flag, an inspect() keyword and (scalars) an ini key, all with one default."""
    import inspect as pyinspect

    import pcg_inspect
    from pcg_inspect.cli._utils import TRACE_OPTIONS
    from pcg_inspect.options import DEFAULT_TIMEOUT_S, declared, defaults
    from pcg_inspect.testing import INI_PREFIX, ini_keys

    names = [name for name, _ in declared()]
    base = defaults()
    assert base["timeout"] == DEFAULT_TIMEOUT_S == 600.0 and base["sizes"] == (1, 8, 64)
    # the CLI: one option per field, under the field's name; its default, parsed back, is the field's default
    cli = {p.name: p for p in TRACE_OPTIONS}
    assert list(cli) == names
    parsed = TraceOptions.from_flags("x.py:make", {n: p.default for n, p in cli.items()})
    assert parsed == TraceOptions(target="x.py:make")
    # the API: the same names with the same defaults
    api = {p.name: p.default for p in pyinspect.signature(pcg_inspect.inspect).parameters.values()
           if p.kind is p.KEYWORD_ONLY and p.name not in ("progress", "model", "plan", *(n for n, _, _ in plan_declared()))}
    assert api == base
    assert TraceOptions.from_api("x.py:make", {}) == TraceOptions(target="x.py:make")
    assert TraceOptions.from_api("x.py:make", {"timeout": None}).timeout == 600.0
    # pytest: an ini key per scalar option
    assert set(ini_keys()) == {INI_PREFIX + n for n, m in declared() if m.ini}
    assert {"pcg_inspect_sizes", "pcg_inspect_device", "pcg_inspect_timeout", "pcg_inspect_replay"} <= set(ini_keys())


def test_option_errors_name_the_field_in_the_api_and_the_flag_in_the_cli():
    from pcg_inspect.options import OptionError

    with pytest.raises(OptionError, match=r"^dynamic must be maybe"):
        TraceOptions(target="x.py:make", dynamic="sometimes").validate()
    with pytest.raises(UsageError, match="did you mean sizes"):
        TraceOptions.from_api("x.py:make", {"size": (8,)})
    res = CliRunner().invoke(app, ["trace", "x.py:make", "--dynamic", "sometimes"])
    assert res.exit_code == 2 and "--dynamic must be maybe" in res.output
    res = CliRunner().invoke(app, ["trace", "x.py:make", "--tokens", "a"])
    assert res.exit_code == 2 and "--tokens expects positive integers" in res.output


def test_pytest_ini_keys_set_the_session_defaults(tmp_path):
    import subprocess
    import sys

    from conftest import EXAMPLES

    (tmp_path / "pytest.ini").write_text("[pytest]\npcg_inspect_sizes = 8\npcg_inspect_replay = false\npcg_inspect_timeout = 120\n"
                                         "pcg_inspect_phase = decode\npcg_inspect_backends = full,tc_piecewise\n")
    (tmp_path / "test_ini.py").write_text(
        "def test_defaults(pcg_inspect):\n"
        "    assert pcg_inspect.defaults == {'sizes': (8,), 'replay': False, 'timeout': 120.0, 'phase': 'decode',\n"
        "                                    'backends': ('tc_piecewise', 'full')}\n"
        f"    r = pcg_inspect.inspect({str(EXAMPLES / 'nsa_indexer' / 'after.py') + ':make'!r})\n"
        "    assert r.environment.capture_sizes == (8,) and r.replay is None\n"
        "    assert r.environment.backends == ('tc_piecewise', 'full') and r.summary.backend == 'full'\n")
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)], capture_output=True,
                         text=True, cwd=tmp_path, timeout=240)
    assert res.returncode == 0, res.stdout[-3000:]


@pytest.mark.parametrize("max_bs", [2048, 4096, 8192, 100, 4])
def test_the_prefill_schedule_is_sglangs(max_bs):
    hook = pytest.importorskip("sglang.srt.arg_groups.cuda_graph_hook")
    from pcg_inspect.schedule import prefill_sizes

    assert list(prefill_sizes(max_bs)) == hook.generate_prefill_cuda_graph_batch_sizes(max_bs)


@pytest.mark.parametrize("max_bs, speculative", [(256, False), (160, False), (1024, False), (48, True), (512, True)])
def test_the_decode_schedule_is_sglangs(max_bs, speculative):
    from types import SimpleNamespace

    hook = pytest.importorskip("sglang.srt.arg_groups.cuda_graph_hook")
    from pcg_inspect.schedule import decode_sizes

    args = SimpleNamespace(disable_cuda_graph_padding=False, speculative_algorithm="EAGLE" if speculative else None)
    assert list(decode_sizes(max_bs, speculative)) == hook.generate_decode_cuda_graph_batch_sizes(args, max_bs)


def test_tokens_take_the_engines_schedule():
    from pcg_inspect.options import parse_sizes

    assert len(parse_sizes("prefill")) == 42 and parse_sizes("prefill")[-1] == 2048
    assert parse_sizes("prefill:64") == (4, 8, 12, 16, 20, 24, 28, 32, 48, 64)
    assert parse_sizes("decode:16") == (1, 2, 4, 8, 12, 16)
    assert TraceOptions.from_api("x.py:f", {"sizes": "decode:8"}).sizes == (1, 2, 4, 8)
    for bad in ("prefill:0", "prefill:x", "prefill:3"):
        with pytest.raises(UsageError):
            parse_sizes(bad)


def test_plan_options_are_declared_once():
    """``plan``'s own options: the CLI's and ``inspect(plan=True)``'s come from PlanOptions' fields."""
    import inspect as pyinspect

    import pcg_inspect
    from pcg_inspect.cli._utils import PLAN_OPTIONS

    names = [n for n, _, _ in plan_declared()]
    assert [p.name for p in PLAN_OPTIONS] == names == ["samples", "sample_sizes", "max_bs", "mem_fraction_static"]
    api = {p.name: p.default for p in pyinspect.signature(pcg_inspect.inspect).parameters.values() if p.name in names}
    assert api == {n: d for n, _, d in plan_declared()}
    cli = PlanOptions.from_values({p.name: p.default for p in PLAN_OPTIONS})
    assert cli == PlanOptions() and PlanOptions.from_values({"samples": "all", "sample_sizes": "all"}) == PlanOptions((0,), 0)
    with pytest.raises(UsageError, match="mem_fraction_static"):
        PlanOptions.from_values({"mem_fraction_static": 1.0})
