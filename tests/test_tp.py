"""Tensor parallel on CPU: 2 ranks over gloo, merged report, divergence caught, diff of multi-rank reports."""

import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES
from pcg_inspect.cli import app
from pcg_inspect.diff import diff
from pcg_inspect.report import load_report

LAYER = str(EXAMPLES / "tp" / "layer.py")
runner = CliRunner()


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    d = tmp_path_factory.mktemp("tp")
    out = {}
    for name in ("make", "make_divergent"):
        path = d / f"{name}.json"
        res = runner.invoke(app, ["trace", f"{LAYER}:{name}", "--nproc", "2", "--tokens", "1,8", "--json", str(path), "--quiet"])
        out[name] = (res, path)
    return out


def test_two_ranks_merge_and_split_at_all_reduce(reports):
    res, path = reports["make"]
    assert res.exit_code == 0, res.output
    r = load_report(str(path))
    assert r.environment.world_size == 2 and [x.environment.rank for x in r.ranks] == [0, 1]
    for rank in r.ranks:
        main = [p for p in rank.pieces if p.graph == 0]
        assert [p.is_split for p in main] == [False, True, False, True, False]
        assert {p.ops[0] for p in main if p.is_split} == {"tp_example.all_reduce"}
        assert rank.replay.status == "ok"  # CPU replay ran the all-reduces in lockstep on both ranks
    assert not [f for f in r.findings if f.kind in ("rank_divergence", "tp_mismatch")]


def test_divergent_rank_is_flagged_with_rank_and_item(reports):
    res, path = reports["make_divergent"]
    assert res.exit_code == 1
    r = load_report(str(path))
    (div,) = [f for f in r.findings if f.kind == "rank_divergence"]
    assert div.details.rank == 1 and div.details.item == "pieces"
    assert "silu on rank 0 vs gelu here" in div.message
    assert {f.details.rank for f in r.findings if f.kind == "tp_mismatch"} == {0, 1}


def test_diff_of_multi_rank_reports(reports):
    a = load_report(str(reports["make"][1]))
    b = load_report(str(reports["make_divergent"][1]))
    d = diff(a, b)
    assert d.regressed
    assert any("rank_divergence" in t for t in d.regressions)
    assert not diff(a, a).changes


def test_nproc_needs_two():
    res = runner.invoke(app, ["trace", f"{LAYER}:make", "--nproc", "1"])
    assert res.exit_code == 0  # one rank is a plain trace
    res = CliRunner().invoke(app, ["trace", f"{LAYER}:make", "--nproc", "2", "--device", "cuda"])
    assert res.exit_code == 2
