"""Where a run happens, and every child process: the pipeline runs in a supervised child, never in the caller.

``trace(options)`` is what a front end (the CLI, the Python API, ``fix``, ``diff``) calls:

- one rank: the whole pipeline in one child process (``worker``), which this process supervises;
- ``--nproc N``: N rank children over torch.distributed, then a single-rank reference child;
  ``tp.merge`` folds their reports;
- a capture failure whose bisection a sticky CUDA error stopped: more children, one per attempt.

Every child shares one deadline (``options.timeout`` from the moment ``trace`` is called). What the
caller's process does: check what it can without torch (``precheck``), start and stop children,
read their answers. ``trace_object`` (the API's live module or factory) is the one in-process run.
Only front ends import this package; it imports the pipeline (in children), never the reverse.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Optional

from .. import kinds as registry
from .. import __version__
from ..errors import TargetError, UsageError
from ..options import Bisect, RunContext, TraceOptions
from ..report import Finding, Report, load_report, with_summary
from . import supervise
from ..frames import spec_roots as target_roots
from .precheck import check
from .request import Answer, Request

Progress = Callable[[str], None]
Echo = Callable[[str], None]

MAX_BISECT_WORKERS = 8


def deadline_of(options: TraceOptions) -> float:
    """The wall-clock time by which a run started now must end (0: no limit)."""
    return time.time() + options.timeout if options.timeout > 0 else 0.0


def trace(options: TraceOptions, progress: Optional[Progress] = None, echo: Optional[Echo] = None,
          deadline: Optional[float] = None) -> Report:
    """Run the pipeline for ``options`` in supervised children and return its report.

    Args:
        options: the run (validated here).
        progress: called with a short line per step.
        echo: called with each line the target (and torch) printed; None: written to stderr as is.
        deadline: the wall-clock end of a larger run this one belongs to (``diff``'s two sides); default:
            ``options.timeout`` from now.
    Raises:
        UsageError, TargetError: bad options or a target that cannot be loaded (from a child too).
    """
    options.validate()
    check(options)
    deadline = deadline_of(options) if deadline is None else deadline
    if options.nproc > 1:
        return _run_ranks(options, progress, echo, deadline)
    return run_child(options, progress, echo, deadline)


def trace_object(obj: Any, args: Any, kwargs: Any, options: TraceOptions, progress: Optional[Progress] = None) -> Report:
    """An in-memory target (the API): in this process (an object cannot cross to a child)."""
    from .local import pipeline

    options.validate()
    return pipeline(options, progress, RunContext(), None, (obj, args, kwargs)).report


def sides(a: str, b: str, options: TraceOptions, echo: Optional[Echo] = None) -> tuple[Report, Report]:
    """The two sides of ``diff`` under one deadline: each a report file, or a target traced in children with
    ``options`` (all of them, ranks included).

    Two versions of one file register the same custom-op names, which one process cannot hold,
    so every traced side gets its own processes.
    """
    deadline = deadline_of(options)
    return side(a, options, echo, deadline), side(b, options, echo, deadline)


def side(spec: str, options: TraceOptions, echo: Optional[Echo] = None, deadline: Optional[float] = None) -> Report:
    """One side of ``diff``: a report file, or a target traced (see ``sides``)."""
    if spec.endswith(".json") or (os.path.isfile(spec) and ":" not in os.path.basename(spec)):
        return load_report(spec)
    return trace(replace(options, target=spec), None, echo, deadline)


def run_child(options: TraceOptions, progress: Optional[Progress] = None, echo: Optional[Echo] = None,
              deadline: Optional[float] = None) -> Report:
    """The whole pipeline in one child; this process supervises it and reads its report."""
    deadline = deadline_of(options) if deadline is None else deadline
    roots = target_roots(options.target)
    with tempfile.TemporaryDirectory(prefix="pcg-inspect-") as tmp:
        child = supervise.start(Path(tmp), Request("trace", options, __version__, deadline), progress, _echo(echo))
        late = supervise.wait([child], deadline)
        report = supervise.collect(child, options, bool(late), roots, deadline=deadline)
    return _continue_bisections(report, options, progress, deadline)


def _echo(echo: Optional[Echo]) -> Echo:
    if echo is not None:
        return echo
    import sys

    return lambda line: print(line, file=sys.stderr, flush=True)


def _continue_bisections(report: Report, options: TraceOptions, progress: Optional[Progress], deadline: float) -> Report:
    """A capture failure whose bisection a sticky CUDA error stopped: go on narrowing it, one fresh child per
    attempt, until one op is left or the run's deadline comes."""
    for _ in range(MAX_BISECT_WORKERS):
        pending = next((f for f in report.findings if f.kind == registry.CAPTURE_FAILED.name and len(f.details.searched) == 2), None)
        if pending is None:
            return report
        d = pending.details
        if progress:
            progress(f"narrowing the capture failure of piece {d.piece} in a fresh process")
        found = None if deadline and time.time() >= deadline else _bisect_in_child(options, d, deadline)
        if found is None:
            return with_summary(report, findings=tuple(replace(f, details=replace(f.details, searched=())) if f is pending else f
                                                       for f in report.findings))
        report = with_summary(report, findings=tuple(found if f is pending else f for f in report.findings))
    return report


def _bisect_in_child(options: TraceOptions, d: Any, deadline: float) -> Optional[Finding]:
    opts = replace(options, sizes=(d.capture_size,), observe_ops=False)
    bisect = Bisect(d.capture_size, d.graph, d.piece, d.phase, d.searched[0], d.searched[1])
    with tempfile.TemporaryDirectory(prefix="pcg-inspect-bisect-") as tmp:
        child = supervise.start(Path(tmp), Request("bisect", opts, __version__, deadline, bisect=bisect))
        supervise.wait([child], deadline)
        if not child.file(Answer.REPORT).exists():
            return None
        result = load_report(str(child.file(Answer.REPORT)))
    return next((f for f in result.findings if f.kind == registry.CAPTURE_FAILED.name), None)


def audit_ops(options: TraceOptions, namespaces: tuple[str, ...], echo: Optional[Echo] = None) -> list[dict[str, Any]]:
    """``pcg-inspect ops --target``: the target traced in a child (it registers its ops there, never here), then
    every op in ``namespaces`` and in each namespace the target calls ops from, audited (rows as dicts)."""
    import json

    options.validate()
    check(options)
    deadline = deadline_of(options)
    with tempfile.TemporaryDirectory(prefix="pcg-inspect-ops-") as tmp:
        child = supervise.start(Path(tmp), Request("ops", options, __version__, deadline, namespaces=namespaces), None,
                                _echo(echo))
        late = supervise.wait([child], deadline)
        if child.file(Answer.OPS).exists():
            return list(json.loads(child.file(Answer.OPS).read_text(encoding="utf-8")))
        report = supervise.collect(child, options, bool(late), target_roots(options.target), deadline=deadline)
    stopped = next((f for f in report.findings if registry.get(f.kind).exit_code is not None), None)
    raise TargetError(stopped.message if stopped is not None else "the ops audit gave no answer")


# ---------------------------------------------------------------- ranks


def _run_ranks(options: TraceOptions, progress: Optional[Progress], echo: Optional[Echo], deadline: float) -> Report:
    from ..tp import merge

    n = options.nproc
    port = _free_port()
    roots = target_roots(options.target)
    with tempfile.TemporaryDirectory(prefix="pcg-inspect-tp-") as tmp:
        if progress:
            progress(f"tracing {n} ranks")
        base_echo = _echo(echo)
        ranks = supervise.start_all([
            lambda r=r: supervise.start(Path(tmp) / f"rank{r}", Request("rank", options, __version__, deadline, rank=r,
                                                                        world_size=n, port=port),
                                        _prefixed(progress, f"rank {r}: "), lambda line: base_echo(f"[rank {r}] {line}"))
            for r in range(n)])
        late = supervise.wait(ranks, deadline)
        reports, errors = _rank_results(ranks, late, options, roots, deadline)
        mismatches: list[Finding] = []
        outputs = tuple(str(c.file(Answer.OUTPUT)) for c in ranks if c.file(Answer.OUTPUT).exists())
        # plan (the capture pass) measures cost: the single-rank reference of the whole model is a check it skips
        if outputs and not options.plan_sample and not (deadline and time.time() >= deadline):
            if progress:
                progress("single-rank reference")
            ref = supervise.start(Path(tmp) / "reference", Request("reference", options, __version__, deadline, outputs=outputs),
                                  None, base_echo)
            supervise.wait([ref], deadline)
            mismatches = _reference_findings(ref)
    return merge(reports, errors, late, mismatches, n, options.timeout)


def _prefixed(progress: Optional[Progress], prefix: str) -> Optional[Progress]:
    return (lambda msg: progress(prefix + msg)) if progress is not None else None


def _rank_results(ranks: list[supervise.Child], late: list[int], options: TraceOptions, roots: tuple[str, ...],
                  deadline: float) -> tuple[dict[int, Report], dict[int, str]]:
    from ..errors import TargetError

    reports, errors = {}, {}
    for r, c in enumerate(ranks):
        try:
            reports[r] = supervise.collect(c, options, r in late, roots, who=f"rank {r}", deadline=deadline)
        except (UsageError, TargetError) as exc:
            if r == 0:
                raise
            errors[r] = f"{type(exc).__name__}: {exc}"
        except supervise.ChildBug as exc:
            errors[r] = str(exc)
    return reports, errors


def _reference_findings(child: supervise.Child) -> list[Finding]:
    import json

    from ..report import from_jsonable

    path = child.file(Answer.FINDINGS)
    if not path.exists():
        return []
    return [from_jsonable(Finding, f) for f in json.loads(path.read_text(encoding="utf-8"))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
