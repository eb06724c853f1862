"""The bundled NSA indexer example: before shows each planted problem at its line, after is clean."""

from conftest import EXAMPLES, traced

BEFORE = str(EXAMPLES / "nsa_indexer" / "before.py")
AFTER = str(EXAMPLES / "nsa_indexer" / "after.py")


def _line_of(path, text):
    for i, line in enumerate(open(path).read().splitlines(), 1):
        if text in line:
            return i
    raise AssertionError(text)


def test_before_reports_each_planted_problem():
    report = traced(f"{BEFORE}:make", sizes=(1, 8, 64))
    got = {b.category: b for b in report.graph_breaks}
    assert got["data_ptr"].line == _line_of(BEFORE, "if src.data_ptr() == dst.data_ptr():")
    assert got["data_ptr"].fix.startswith("if not torch.compiler.is_compiling() and")
    assert got["data_dependent"].line == _line_of(BEFORE, "if positions.max() < TOPK:")
    assert got["missing_fake_impl"].line == _line_of(BEFORE, "torch.ops.nsa_ext.topk_indices(")
    assert got["missing_fake_impl"].op == "nsa_ext.topk_indices"
    assert "register_fake(\"nsa_ext::topk_indices\")" in got["missing_fake_impl"].fix
    assert not report.summary.capturable


def test_after_is_clean_and_splits_at_topk():
    report = traced(f"{AFTER}:make", sizes=(1, 8, 64))
    assert report.summary.capturable and not report.graph_breaks
    assert report.summary.num_findings["error"] == 0
    assert report.split_ops == ("nsa.indexer_topk",)
    for g in report.graphs:
        pieces = [p for p in report.pieces if p.graph == g.index]
        assert [p.is_split for p in pieces] == [False, True, False]
        assert pieces[1].ops == ("nsa.indexer_topk",)
        assert "nsa.store_k_cache" in pieces[0].ops
