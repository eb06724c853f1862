"""pcg-inspect: find why a model fails, recompiles or goes wrong under piecewise CUDA graph capture.

The public API (importing the package imports neither torch nor rich)::

    import pcg_inspect
    report = pcg_inspect.inspect("examples/nsa_indexer/after.py:make")      # -> Report
    report.capturable, report.problems(), report.to_text(), report.to_json()

``pcg_inspect.testing`` holds the pytest helpers (``assert_capturable``, ``assert_no_regression``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

__all__ = ["inspect", "Report", "Problem", "Finding", "GraphBreak", "TraceOptions", "ModelOptions", "diff",
           "load_report", "PcgInspectError", "UsageError", "TargetError", "__version__"]

_LAZY = {
    "inspect": ("api", "inspect"),
    "Report": ("report", "Report"),
    "Problem": ("report", "Problem"),
    "Finding": ("report", "Finding"),
    "GraphBreak": ("report", "GraphBreak"),
    "load_report": ("report", "load_report"),
    "TraceOptions": ("options", "TraceOptions"),
    "ModelOptions": ("options", "ModelOptions"),
    "diff": ("diff", "diff"),
    "PcgInspectError": ("errors", "PcgInspectError"),
    "UsageError": ("errors", "UsageError"),
    "TargetError": ("errors", "TargetError"),
}

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load on first use
    from .api import inspect
    from .diff import diff
    from .errors import PcgInspectError, TargetError, UsageError
    from .options import ModelOptions, TraceOptions
    from .report import Finding, GraphBreak, Problem, Report, load_report


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
        if module in ("api", "report", "diff"):  # names that hand out Reports: their text view comes with them
            importlib.import_module(".render.console", __name__)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pcg_inspect' has no attribute {name!r}")
