"""Report round-trip and malformed input."""

import json

import pytest

from conftest import TARGETS, traced
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
        ('{"schema_version": "2", "summary": 3}', "malformed report"),
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
