"""pytest helpers for engine CI, and the pytest plugin (entry point ``pytest11: pcg_inspect``).

    from pcg_inspect.testing import assert_capturable, assert_no_regression

    def test_decoder_layer_is_capturable():
        assert_capturable("llama3-8b", sizes=(1, 8), model=ModelOptions(overrides=SMALL))

    def test_no_new_graph_breaks():
        assert_no_regression("my_model/layer.py:make", baseline="tests/pcg/layer.json")

``pytest --pcg-update-baseline`` (or ``PCG_INSPECT_UPDATE_BASELINE=1``) rewrites the baselines
instead of comparing. The ``pcg_inspect`` fixture gives the same functions with the session's
defaults (``pcg_inspect_<option>`` in the pytest ini, e.g. ``pcg_inspect_sizes = 1,8``, ``pcg_inspect_timeout = 120``;
one key per ``TraceOptions`` option, see ``ini_keys``). Importing this module
imports neither torch nor the CLI.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

UPDATE_ENV = "PCG_INSPECT_UPDATE_BASELINE"
_TEST_DIR: ContextVar[Optional[Path]] = ContextVar("pcg_inspect_test_dir", default=None)
"""The folder of the test being run (set by the plugin): relative targets and baselines are found from there."""


def _from_test_dir(path: str | os.PathLike[str]) -> str:
    """A relative path as the running test file sees it: its own folder when the path exists there (or exists
    nowhere yet: a new baseline), else the current directory."""
    base = _TEST_DIR.get()
    if base is None or os.path.isabs(path):
        return str(path)
    here = base / path
    return str(here) if here.exists() or not Path(path).exists() else str(path)


def _resolve_target(target: Any) -> Any:
    """A target string whose file part is relative, resolved from the test file (model names are left alone)."""
    if not isinstance(target, str) or ":" not in target:
        return target
    where, _, attr = target.rpartition(":")
    if where.endswith(".py") or "/" in where or "\\" in where:
        return f"{_from_test_dir(where)}:{attr}"
    return target


def assert_capturable(target: Any, args: Any = None, kwargs: Optional[dict[str, Any]] = None, **options: Any) -> Any:
    """Trace ``target`` (see ``pcg_inspect.inspect``) and fail with the readable list of problems unless capturable
    under every backend judged (``backends=``; by default sglang's default for the phase and tc_piecewise).

    Returns:
        The Report, for further assertions.
    Raises:
        AssertionError: one line per problem (file:line, category, fix), then the verdict.
    """
    from .api import inspect

    report = inspect(_resolve_target(target), args, kwargs, **options)
    if not report.all_capturable:
        raise AssertionError(problems_text(report))
    return report


def assert_no_regression(report_or_target: Any, baseline: str | os.PathLike[str],
                         fail_on: Sequence[str] = ("breaks", "findings", "replay"), update: Optional[bool] = None,
                         **options: Any) -> Any:
    """Compare with a saved baseline report by ``diff``'s rules; fail on a regression.

    Args:
        report_or_target: a Report, or a target traced here (``**options`` as for ``inspect``).
        baseline: the saved report JSON (relative: from the running test file's folder, see ``_from_test_dir``).
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

    report = report_or_target if isinstance(report_or_target, Report) else inspect(_resolve_target(report_or_target),
                                                                                 **options)
    path = Path(_from_test_dir(baseline))
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
    verdicts = report.summary.backends
    under = ""
    if len(verdicts) > 1:
        failing = [v.backend for v in verdicts if not v.capturable]
        passing = [v.backend for v in verdicts if v.capturable]
        under = f" under {', '.join(failing)}" + (f" (capturable under {', '.join(passing)})" if passing else "")
    lines = [f"pcg-inspect: {report.environment.target} is NOT CAPTURABLE{under} ({len(problems)} problem(s)):"]
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
    for name, help_text in ini_keys().items():
        parser.addini(name, help_text, default="")


try:
    import pytest as _pytest

    @_pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(item: Any) -> Any:
        """Relative targets and baselines resolve from the running test's file, wherever pytest was started."""
        token = _TEST_DIR.set(Path(str(item.path)).resolve().parent)
        try:
            yield
        finally:
            _TEST_DIR.reset(token)

except ImportError:  # pragma: no cover - imported outside pytest
    pass


def pytest_configure(config: Any) -> None:
    if config.getoption("--pcg-update-baseline", default=False):
        os.environ[UPDATE_ENV] = "1"  # the plain functions read it too


INI_PREFIX = "pcg_inspect_"


def ini_keys() -> dict[str, str]:
    """The pytest ini keys, derived from ``TraceOptions``: ``pcg_inspect_<field>`` -> help (same text as the flag)."""
    from .options import declared

    return {INI_PREFIX + name: (f"pcg-inspect: {name}, true or false (false = {meta.flag}: {meta.help})" if meta.negate
                                else f"pcg-inspect: default {name} ({meta.flag}): {meta.help}")
            for name, meta in declared() if meta.ini}


def _session(config: Any) -> Session:
    from .options import ini_value

    defaults: dict[str, Any] = {}
    for key in ini_keys():
        text = config.getini(key)
        if text:
            defaults[key[len(INI_PREFIX):]] = ini_value(key[len(INI_PREFIX):], str(text))
    return Session(defaults, bool(config.getoption("--pcg-update-baseline", default=False)))


try:  # the fixture, when pytest is there (the plugin is loaded only by pytest anyway)
    import pytest

    @pytest.fixture(scope="session")
    def pcg_inspect(pytestconfig: Any) -> Session:
        """pcg-inspect's helpers with this session's defaults (the ``pcg_inspect_<option>`` ini keys)."""
        return _session(pytestconfig)

except ImportError:  # pragma: no cover - imported outside pytest
    pass
