"""diff with real traces: the example's fixes, a regression, line shifts, malformed input."""

import json

from typer.testing import CliRunner

from conftest import EXAMPLES, TARGETS, traced
from pcg_inspect.cli import app
from pcg_inspect.diff import diff, parse_fail_on

runner = CliRunner()
BEFORE = str(EXAMPLES / "nsa_indexer" / "before.py")
AFTER = str(EXAMPLES / "nsa_indexer" / "after.py")


def _reports():
    return traced(f"{BEFORE}:make", sizes=(1, 8, 64)), traced(f"{AFTER}:make", sizes=(1, 8, 64))


def test_before_to_after_shows_each_planted_problem_fixed():
    before, after = _reports()
    d = diff(before, after)
    fixed = [c.title for c in d.changes if c.kind == "fixed" and c.section == "breaks"]
    assert len(fixed) == 3
    assert any("data_ptr" in t for t in fixed) and any("data_dependent" in t for t in fixed)
    assert any("missing_fake_impl" in t and "topk_indices" in t for t in fixed)
    assert not d.regressed and d.capturable_b
    assert any("split points moved: none → nsa.indexer_topk@1" in c.title for c in d.changes)


def test_after_to_before_is_a_regression_naming_each_problem():
    before, after = _reports()
    d = diff(after, before)
    assert d.regressed
    joined = "\n".join(d.regressions)
    for needle in ("data_ptr", "data_dependent", "missing_fake_impl", "tc_piecewise: capturable true → false",
                   "breakable: capturable true → false"):
        assert needle in joined


def test_same_report_has_no_change():
    before, _ = _reports()
    d = diff(before, before)
    assert not d.changes and not d.regressed and d.unchanged["breaks"] == 3


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_line_shift_alone_is_no_change_and_added_data_ptr_is_regression(tmp_path):
    src = open(str(TARGETS / "breaks.py")).read()
    a = _write(tmp_path, "layer_a.py", src)
    b = _write(tmp_path, "layer_b.py", "# a comment\n\n\n" + src)  # every line moves by 3
    res = runner.invoke(app, ["diff", f"{a}:make_data_ptr", f"{b}:make_data_ptr", "--tokens", "8", "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert not [c for c in data["changes"] if c["section"] in ("breaks", "findings")]
    # B adds a data_ptr comparison to a clean layer: a regression, exit 1, named
    res = runner.invoke(app, ["diff", f"{a}:make_clean", f"{b}:make_data_ptr", "--tokens", "8"])
    assert res.exit_code == 1
    assert "graph break data_ptr" in res.output and "REGRESSION" in res.output


def test_fail_on_selects_what_counts(tmp_path):
    before, after = _reports()
    # the verdicts alone count: a graph break blocks tc_piecewise, a data-dependent one every backend
    assert diff(after, before, fail_on=("timing",)).regressions == ("tc_piecewise: capturable true → false",
                                                                    "breakable: capturable true → false")
    assert parse_fail_on(["breaks,replay", "any"]) == ("breaks", "replay", "any")


def test_report_files_and_markdown(tmp_path):
    before, after = _reports()
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(before.to_json())
    pb.write_text(after.to_json())
    res = runner.invoke(app, ["diff", str(pa), str(pb), "--format", "markdown"])
    assert res.exit_code == 0
    assert res.stdout.startswith("### ✅ pcg-inspect diff: No regression: ")
    assert "| 🟢 | breaks |" in res.stdout
    res = runner.invoke(app, ["diff", str(pb), str(pa), "--json", str(tmp_path / "d.json")])
    assert res.exit_code == 1
    data = json.loads((tmp_path / "d.json").read_text())
    assert data["regressed"] is True
    # the headline is one sentence: how many new problems, the first one, what was fixed, the verdict change
    n = len(data["regressions"])
    head = res.stdout.splitlines()[1]
    assert head.startswith(f"REGRESSION: {n} new problem") and "capturable: yes → no" in head, head


def test_messages_are_shortened_at_word_boundaries():
    from pcg_inspect.text import shorten

    text = "the worker process died while loading the target and nothing was written"
    short = shorten(text, 30)
    assert short.endswith("…") and len(short) <= 30 and text.startswith(short[:-1]) and text[len(short) - 1] == " "
    assert shorten("short", 30) == "short"


def test_malformed_and_missing_inputs_exit_2(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(_reports()[0].to_json())
    bad = tmp_path / "bad.json"
    bad.write_text(good.read_text()[:100])
    for args, needle in (
        ([str(bad), str(good)], "malformed report JSON"),
        ([str(tmp_path / "none.json"), str(good)], "report file not found"),
        ([str(good), "nope.py:make"], "target file not found"),
        ([str(good), str(good), "--fail-on", "vibes"], "--fail-on takes"),
        ([str(good), str(good), "--format", "html"], "--format must be"),
    ):
        res = runner.invoke(app, ["diff", *args])
        assert res.exit_code == 2, (args, res.output)
        assert needle in res.output and "Traceback" not in res.output


def test_torch_version_difference_is_noted():
    import dataclasses

    before, after = _reports()
    other = dataclasses.replace(after, environment=dataclasses.replace(after.environment, torch_version="2.99.0"))
    d = diff(before, other)
    assert any("torch differs" in n for n in d.notes)
    assert not [c for c in d.changes if c.section == "guards"]
