"""The Python API: ``pcg_inspect.inspect(target) -> Report``, the same pipeline and Report as the CLI.

    import pcg_inspect
    report = pcg_inspect.inspect("examples/nsa_indexer/after.py:make")
    assert report.capturable, report.to_text()
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from .options import TraceOptions, declared, defaults, plan_declared
from .report import Report


def inspect(target: Any, args: Any = None, kwargs: Optional[dict[str, Any]] = None, *,
            progress: Optional[Callable[[str], None]] = None, plan: bool = False, **options: Any) -> Report:
    """Trace ``target`` as piecewise CUDA graph capture does and return the Report (what ``trace --json`` writes).

    Args:
        target: an ``nn.Module`` (``args``/``kwargs`` are its inputs; without them they are built per
            size, as for a bare module), a factory (called as the CLI calls one: ``tokens``,
            ``device``, ``dtype`` when it takes them), or a target string (``"file.py:make"``, a model name).
        args, kwargs: the module's inputs (a module target only).
        progress: called with a short line per step.
        plan: ``pcg-inspect plan`` instead of ``trace`` (a target string only), with ``PlanOptions``' fields as
            keywords: the engine's schedule (``sizes`` when given, else the phase's up to ``max_bs``) forecast from
            ``samples`` layer counts ((0,) or "all": the whole model) at ``sample_sizes`` of its sizes (0: all), the
            pool's fit at ``mem_fraction_static``; the Report carries ``plan``.
        **options: the run's options, named as ``TraceOptions``' fields and with its defaults (the signature
            lists them): ``sizes`` (capture sizes, ``--tokens``), ``split_ops``, ``sglang_split_ops``,
            ``device`` (a target string runs in a supervised child process on every device, as the CLI
            does; an object target runs in this process), ``dtype``, ``dynamic``, ``replay``, ``isolate``,
            ``layers``/``num_layers``/``attn``/``overrides`` (or ``model=ModelOptions(...)``) for model
            targets, ``nproc`` (a target string only), ``timeout`` (seconds, 600 as on the command line;
            0: no limit). ``None`` means the default.
    Returns:
        The Report: ``report.capturable``, ``report.problems()``, ``report.to_text()``, ``report.to_json()``.
    Raises:
        UsageError, TargetError: bad options, or a target that cannot be loaded.
    """
    from . import run as runner
    from .errors import UsageError

    from .options import PlanOptions

    name = target if isinstance(target, str) else getattr(target, "__qualname__", type(target).__qualname__)
    planned = {k: options.pop(k) for k, _, _ in plan_declared() if k in options}
    if planned and not plan:
        raise UsageError(f"{', '.join(planned)}: plan=True's options")
    opts = TraceOptions.from_api(name, options, command="pcg_inspect.inspect()")
    if plan:
        from .plan import make_plan

        plan_opts = PlanOptions.from_values(planned)
        if not isinstance(target, str) or args is not None or kwargs is not None:
            raise UsageError("plan=True takes a target string (a model or file.py:factory): each sample is traced in "
                             "a child of its own")
        return make_plan(opts, plan_opts, progress)
    if isinstance(target, str):
        if args is not None or kwargs is not None:
            raise UsageError("args/kwargs go with a module target; a target string's factory builds its own inputs")
        return runner.trace(opts, progress)
    if opts.nproc > 1:
        raise UsageError("nproc > 1 needs a target string: each rank builds its own module in its own process")
    return runner.trace_object(target, args, kwargs, opts, progress)


def _signature() -> Any:
    """``inspect``'s signature with every option spelled out, derived from ``TraceOptions`` (help() and IDEs show it)."""
    import inspect as pyinspect

    from .options import ModelOptions

    own = [p for p in pyinspect.signature(inspect).parameters.values() if p.kind is not p.VAR_KEYWORD]
    values = defaults()
    opts = [pyinspect.Parameter(name, pyinspect.Parameter.KEYWORD_ONLY, default=values[name]) for name, _ in declared()]
    model = pyinspect.Parameter("model", pyinspect.Parameter.KEYWORD_ONLY, default=None, annotation=Optional[ModelOptions])
    planned = [pyinspect.Parameter(name, pyinspect.Parameter.KEYWORD_ONLY, default=default)
               for name, _, default in plan_declared()]
    return pyinspect.Signature([*own, *opts, model, *planned], return_annotation=Report)


inspect.__signature__ = _signature()  # type: ignore[attr-defined]
