"""pytest helpers for engine CI, and the pytest plugin (entry point ``pytest11: pcg_inspect``).

    from pcg_inspect.testing import assert_capturable, assert_no_regression

    def test_decoder_layer_is_capturable():
        assert_capturable("llama3-8b", sizes=(1, 8), model=ModelOptions(overrides=SMALL))

    def test_no_new_graph_breaks():
        assert_no_regression("my_model/layer.py:make", baseline="tests/pcg/layer.json")

``pytest --pcg-update-baseline`` (or ``PCG_INSPECT_UPDATE_BASELINE=1``) rewrites the baselines
instead of comparing. The ``pcg_inspect`` fixture gives the same functions with the session's
defaults (``pcg_inspect_sizes`` / ``pcg_inspect_device`` in the pytest ini). Importing this module
imports neither torch nor the CLI.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

UPDATE_ENV = "PCG_INSPECT_UPDATE_BASELINE"


def assert_capturable(target: Any, args: Any = None, kwargs: Optional[dict[str, Any]] = None, **options: Any) -> Any:
    """Trace ``target`` (see ``pcg_inspect.inspect``) and fail with the readable list of problems unless capturable.

    Returns:
        The Report, for further assertions.
    Raises:
        AssertionError: one line per problem (file:line, category, fix), then the verdict.
    """
    from .api import inspect

    report = inspect(target, args, kwargs, **options)
    if not report.capturable:
        raise AssertionError(problems_text(report))
    return report


def assert_no_regression(report_or_target: Any, baseline: str | os.PathLike[str],
                         fail_on: Sequence[str] = ("breaks", "findings", "replay"), update: Optional[bool] = None,
                         **options: Any) -> Any:
    """Compare with a saved baseline report by ``diff``'s rules; fail on a regression.

    Args:
        report_or_target: a Report, or a target traced here (``**options`` as for ``inspect``).
        baseline: the saved report JSON.
        fail_on: what counts as a regression (``diff --fail-on``).
        update: rewrite the baseline instead of comparing (default: ``--pcg-update-baseline`` /
            ``PCG_INSPECT_UPDATE_BASELINE=1``).
    Returns:
        The DiffResult (None when the baseline was written).
    Raises:
        AssertionError: the regressions, one per line; or no baseline yet (and how to record one).
    """
    from ._io import write_atomic
    from .api import inspect
    from .diff import diff
    from .report import Report, load_report

    report = report_or_target if isinstance(report_or_target, Report) else inspect(report_or_target, **options)
    path = Path(baseline)
    if update if update is not None else os.environ.get(UPDATE_ENV) == "1":
        write_atomic(path, report.to_json())
        return None
    if not path.exists():
        raise AssertionError(f"no pcg-inspect baseline at {path}: run pytest with --pcg-update-baseline to record one")
    result = diff(load_report(str(path)), report, tuple(fail_on))
    if result.regressed:
        lines = [f"pcg-inspect: {len(result.regressions)} regression(s) against {path}:"]
        lines += [f"  ✗ {r}" for r in result.regressions]
        lines.append("(rerun with --pcg-update-baseline if the change is intended)")
        raise AssertionError("\n".join(lines))
    return result


def problems_text(report: Any) -> str:
    """The problems of a report, one readable block each: where, what, and the fix to paste."""
    problems = report.problems()
    lines = [f"pcg-inspect: {report.environment.target} is NOT CAPTURABLE ({len(problems)} problem(s)):"]
    for i, p in enumerate(problems, 1):
        where = f"{p.file}:{p.line}" if p.file else "-"
        lines.append(f"{i:>2}. [{p.category}] {p.title}")
        lines.append(f"      at {where}")
        if p.hint:
            lines.append(f"      hint: {p.hint}")
        if p.fix:
            lines.append("      fix:  " + p.fix.replace("\n", "\n            "))
    return "\n".join(lines)


@dataclass
class Session:
    """What the ``pcg_inspect`` fixture gives: the helpers with the session's defaults."""

    defaults: dict[str, Any] = field(default_factory=dict)
    update: bool = False

    def inspect(self, target: Any, args: Any = None, kwargs: Optional[dict[str, Any]] = None, **options: Any) -> Any:
        from .api import inspect

        return inspect(target, args, kwargs, **{**self.defaults, **options})

    def assert_capturable(self, target: Any, args: Any = None, kwargs: Optional[dict[str, Any]] = None, **options: Any) -> Any:
        return assert_capturable(target, args, kwargs, **{**self.defaults, **options})

    def assert_no_regression(self, report_or_target: Any, baseline: str | os.PathLike[str], **options: Any) -> Any:
        update = options.pop("update", self.update)
        return assert_no_regression(report_or_target, baseline, update=update, **{**self.defaults, **options})


# ---------------------------------------------------------------- the pytest plugin

def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("pcg-inspect")
    group.addoption("--pcg-update-baseline", action="store_true", default=False,
                    help="pcg-inspect: rewrite assert_no_regression baselines instead of comparing.")
    parser.addini("pcg_inspect_sizes", "pcg-inspect: default capture sizes, e.g. 1,8,64", default="")
    parser.addini("pcg_inspect_device", "pcg-inspect: default device (cpu or cuda)", default="")


def pytest_configure(config: Any) -> None:
    if config.getoption("--pcg-update-baseline", default=False):
        os.environ[UPDATE_ENV] = "1"  # the plain functions read it too


def _session(config: Any) -> Session:
    defaults: dict[str, Any] = {}
    sizes = config.getini("pcg_inspect_sizes")
    if sizes:
        defaults["sizes"] = tuple(int(s) for s in str(sizes).split(","))
    device = config.getini("pcg_inspect_device")
    if device:
        defaults["device"] = device
    return Session(defaults, bool(config.getoption("--pcg-update-baseline", default=False)))


try:  # the fixture, when pytest is there (the plugin is loaded only by pytest anyway)
    import pytest

    @pytest.fixture(scope="session")
    def pcg_inspect(pytestconfig: Any) -> Session:
        """pcg-inspect's helpers with this session's defaults (``pcg_inspect_sizes``, ``pcg_inspect_device``)."""
        return _session(pytestconfig)

except ImportError:  # pragma: no cover - imported outside pytest
    pass
