"""The Python API: ``pcg_inspect.inspect(target) -> Report``, the same pipeline and Report as the CLI.

    import pcg_inspect
    report = pcg_inspect.inspect("examples/nsa_indexer/after.py:make")
    assert report.capturable, report.to_text()
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from .options import DEFAULT_CAPTURE_SIZES, DEFAULT_TIMEOUT_S, ModelOptions, TraceOptions
from .report import Report


def inspect(
    target: Any,
    args: Any = None,
    kwargs: Optional[dict[str, Any]] = None,
    *,
    sizes: Sequence[int] = DEFAULT_CAPTURE_SIZES,
    split_ops: Sequence[str] = (),
    sglang_split_ops: bool = True,
    device: str = "cpu",
    dtype: Optional[str] = None,
    replay: bool = True,
    dynamic: str = "maybe",
    isolate: bool = False,
    nproc: int = 1,
    timeout: Optional[float] = DEFAULT_TIMEOUT_S,
    model: Optional[ModelOptions] = None,
    progress: Optional[Callable[[str], None]] = None,
) -> Report:
    """Trace ``target`` as piecewise CUDA graph capture does and return the Report (what ``trace --json`` writes).

    Args:
        target: an ``nn.Module`` (``args``/``kwargs`` are its inputs; without them they are built per
            size, as for a bare module), a factory (called as the CLI calls one: ``tokens``,
            ``device``, ``dtype`` when it takes them), or a target string (``"file.py:make"``, a model name).
        args, kwargs: the module's inputs (a module target only).
        sizes: capture sizes (token counts).
        split_ops: extra split ops (``ns::op``).
        sglang_split_ops: add sglang's registered split ops when sglang is already imported
            (``--no-sglang-split-ops`` is False).
        device: ``"cpu"`` or ``"cuda"``. A target string runs in a supervised child process, as the CLI
            does (whatever the target does, exits or hangs, this process keeps control); an object target
            runs in this process.
        dtype: ``float32``, ``bfloat16`` or ``float16`` (default: as built).
        replay: replay the pieces against eager.
        dynamic: how token dims are marked: ``maybe`` (sglang), ``unbacked``, ``static``.
        isolate: GPU replay: each piece in its own memory pool.
        nproc: tensor-parallel ranks (a target string only: each rank builds its own module).
        timeout: seconds for the whole run, as ``--timeout`` (default 600; 0: no limit; None: the default).
        model: layer options for a model target.
        progress: called with a short line per step.
    Returns:
        The Report: ``report.capturable``, ``report.problems()``, ``report.to_text()``, ``report.to_json()``.
    Raises:
        UsageError, TargetError: bad options, or a target that cannot be loaded.
    """
    from . import run as runner

    options = TraceOptions(
        target=target if isinstance(target, str) else getattr(target, "__qualname__", type(target).__qualname__),
        capture_sizes=tuple(sizes), split_ops=tuple(split_ops), use_sglang_split_ops=sglang_split_ops, device=device,
        dtype=dtype, replay=replay, dynamic=dynamic, isolate=isolate, nproc=nproc,
        model=model or ModelOptions(), timeout_s=DEFAULT_TIMEOUT_S if timeout is None else float(timeout), command="pcg_inspect.inspect()",
    )
    if isinstance(target, str):
        if args is not None or kwargs is not None:
            from .errors import UsageError

            raise UsageError("args/kwargs go with a module target; a target string's factory builds its own inputs")
        return runner.trace(options, progress)
    if nproc > 1:
        from .errors import UsageError

        raise UsageError("nproc > 1 needs a target string: each rank builds its own module in its own process")
    return runner.trace_object(target, args, kwargs, options, progress)
