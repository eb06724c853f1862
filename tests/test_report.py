"""Report round-trip and malformed input."""

import json

import pytest

from conftest import EXAMPLES, TARGETS, traced

ROOT_EX = EXAMPLES / "nsa_indexer" / "before.py"
from pcg_inspect.errors import ReportError
from pcg_inspect.report import Report, load_report


def test_round_trip_is_lossless():
    report = traced(f"{TARGETS / 'breaks.py'}:make_all")
    again = Report.from_json(report.to_json())
    assert again == report
    assert again.graph_breaks[0].user_stack[0].file == report.graph_breaks[0].user_stack[0].file


@pytest.mark.parametrize(
    "text, needle",
    [
        ("{", "malformed report JSON"),
        ('{"a": 1}', "no schema_version"),
        ('{"schema_version": "99"}', "schema_version '99' is not supported"),
        ('{"schema_version": "3", "summary": 3}', "malformed report"),
        ('{"schema_version": "1"}', "schema_version '1' is not supported"),
        ("[1, 2]", "no schema_version"),
    ],
)
def test_malformed(text, needle):
    with pytest.raises(ReportError, match=needle.replace("(", r"\(")):
        Report.from_json(text)


def test_truncated_file(tmp_path):
    text = traced(f"{TARGETS / 'breaks.py'}:make_clean").to_json()
    p = tmp_path / "r.json"
    p.write_text(text[: len(text) // 2])
    with pytest.raises(ReportError, match="r.json: malformed report JSON"):
        load_report(str(p))
    with pytest.raises(ReportError, match="not found"):
        load_report(str(tmp_path / "none.json"))


def test_json_is_plain_data():
    data = json.loads(traced(f"{TARGETS / 'stack.py'}:make").to_json())
    assert isinstance(data["pieces"], list) and isinstance(data["graphs"][0]["nodes"], list)


# ---------------------------------------------------------------- the verdict has one author

import dataclasses  # noqa: E402

from pcg_inspect.details import CaptureDetails  # noqa: E402
from pcg_inspect.report import Finding, PieceReplay, Replay, SizeReplay, decide, exit_code, with_summary  # noqa: E402


def _with_replay(report, *statuses, message=""):
    pieces = tuple(PieceReplay(i, False, s, message=message) for i, s in enumerate(statuses))
    size = SizeReplay(64, 0, statuses[0] if len(set(statuses)) == 1 else "capture_failed", pieces)
    return with_summary(report, replay=Replay("cuda:0", "cuda-graph", size.status, (size,)))


def test_clean_trace_with_ok_replay_is_capturable():
    clean = traced(f"{TARGETS / 'breaks.py'}:make_clean")
    r = _with_replay(clean, "ok")
    assert r.capturable and r.summary.verdict == "" and exit_code(r) == 0


@pytest.mark.parametrize("status, words", [("capture_failed", "failed CUDA graph capture"),
                                           ("mismatch", "differs from eager after replay"),
                                           ("error", "raised during replay")])
def test_a_failed_piece_makes_it_not_capturable_and_names_it(status, words):
    clean = traced(f"{TARGETS / 'breaks.py'}:make_clean")
    r = _with_replay(clean, status, message="input address changed since capture")
    assert not r.all_capturable and exit_code(r) == 1
    assert r.capturable  # the tc_piecewise replay says nothing about breakable, sglang's prefill default
    assert r.verdict_for("tc_piecewise").verdict == f"piece 0 of forward {words} at 64 tokens"
    assert r.problems()[0].source == "replay"


def test_a_capture_failed_finding_names_the_op_and_line_and_counts_once():
    clean = traced(f"{TARGETS / 'breaks.py'}:make_clean")
    r = _with_replay(clean, "capture_failed")
    f = Finding(kind="capture_failed", severity="error", message="m", file="/x/layer.py", line=12, op="aten.item",
                details=CaptureDetails(capture_size=64, graph=0, piece=0, node="item", cause="scalar"))
    r = with_summary(r, findings=r.findings + (f,))
    assert r.summary.verdict == "tc_piecewise: piece 0 of forward failed CUDA graph capture at 64 tokens (aten.item at layer.py:12)"
    assert r.summary.num_problems == 1  # the piece and the finding that explains it are one problem


def test_breaks_and_error_findings_decide_before_replay_and_warnings_never():
    before = traced(f"{ROOT_EX}:make", sizes=(1, 8, 64))
    capturable, verdict, n = decide(before.graph_breaks, before.findings, None, before.graphs)
    assert not capturable and verdict.startswith("graph break (data_ptr) at before.py:") and n > 3
    warn = dataclasses.replace(before.findings[0], kind="shape_specialization", severity="warning")
    assert decide((), (warn,), None)[0]
