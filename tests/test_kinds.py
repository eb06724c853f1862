"""A finding kind is declared once (pcg_inspect/kinds.py): a new one, declared here alone, works everywhere.

The dummy kind below is all a contributor writes for a new kind: its details record and one
``declare(Kind(...))``. Nothing else in pcg_inspect is edited, and the JSON round trip, ``explain``,
the docs, the terminal view, ``diff``, ``fix`` and the exit code all know it.
"""

import dataclasses
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES, traced
from pcg_inspect import kinds as registry
from pcg_inspect.details import Details
from pcg_inspect.kinds import Kind, declare
from pcg_inspect.report import Finding, Report, exit_code, with_summary

AFTER = f"{EXAMPLES / 'nsa_indexer' / 'after.py'}:make"


@dataclasses.dataclass(frozen=True)
class SlowKernelDetails(Details):
    """A kernel that is correct under capture but slow at small sizes."""

    kernel: str
    us_per_token: float = 0.0

    def match_key(self) -> str:
        return self.kernel


@pytest.fixture
def slow_kernel():
    kind = declare(Kind(
        "slow_kernel", title="A kernel slower than its eager twin", severity="error",
        means="The captured kernel is slower than eager at small sizes.", example="torch.ops.my.kernel(x)",
        fix="Pick another kernel for small sizes.", details=SlowKernelDetails,
        decision="choose which kernel runs at small sizes: pcg-inspect cannot pick it"))
    yield kind
    registry._REGISTRY.pop("slow_kernel")


def _with(report: Report, kernel: str) -> Report:
    found = Finding(kind="slow_kernel", severity="error", message=f"{kernel} is slow", file=str(Path(AFTER.split(':')[0])),
                    line=3, function="forward", details=SlowKernelDetails(kernel, 1.5))
    return with_summary(report, findings=report.findings + (found,))


def test_a_kind_declared_in_one_place_reaches_every_reader(slow_kernel, tmp_path):
    from pcg_inspect.catalog import catalog_markdown
    from pcg_inspect.cli import app
    from pcg_inspect.diff import diff
    from pcg_inspect.fix import plan
    from pcg_inspect.render.console import plain_text

    base = traced(AFTER, sizes=(8,))
    report = _with(base, "k1")
    # the JSON round trip rebuilds the typed record
    again = Report.from_json(report.to_json())
    assert again.findings[-1].details == SlowKernelDetails("k1", 1.5)
    with pytest.raises(TypeError):
        Finding(kind="slow_kernel", severity="error", message="", details=Details())  # the declared record only
    # explain and the docs
    res = CliRunner().invoke(app, ["explain", "slow_kernel"])
    assert res.exit_code == 0 and "slower than its eager twin" in res.output
    assert "## `slow_kernel` — A kernel slower than its eager twin" in catalog_markdown()
    # the verdict, the view and the exit code
    assert not report.capturable and exit_code(report) == 1
    assert "k1 is slow" in plain_text(report)
    # diff matches by the record's match_key: k1 -> k1 unchanged, k1 -> k2 one fixed and one introduced
    assert not diff(report, _with(base, "k1")).regressed
    changed = diff(report, _with(base, "k2"))
    assert changed.regressed and {c.kind for c in changed.changes} >= {"fixed", "introduced"}
    # fix states the kind's decision
    _, left = plan(report, Path(AFTER.split(":")[0]))
    assert any("pcg-inspect cannot pick it" in item.why for item in left)


def test_a_kind_that_stops_the_run_sets_the_exit_code_from_its_declaration(slow_kernel):
    declare(dataclasses.replace(slow_kernel, exit_code=4))
    assert exit_code(_with(traced(AFTER, sizes=(8,)), "k1")) == 4
