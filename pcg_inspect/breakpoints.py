"""breakable's break points: where sglang's breakable CUDA graph (BCG) ends a segment and runs eagerly.

sglang 0.5.23 (``runner_backend_utils/breakable_cuda_graph``) breaks at every call of an ``@eager_on_graph``
function — ``RadixAttention.forward``, linear attention, the DSA indexer, MoE all-to-all — and nowhere else: a
split op (``@register_split_op()``) is *not* a break by itself (``inplace_all_reduce`` is captured into the
segment), only when an ``@eager_on_graph`` function calls it. So the break points here are

- the target's own ``@eager_on_graph`` functions, found while they run: sglang's decorator only splits inside
  sglang's capture, so while a hook is active its callable is routed to ours (``_sglang_compat``);
- break ops: ops the engine calls from such a function, for targets that call the op directly (``--break-op``,
  the target's ``BREAK_OPS``, a model's attention: it stands for ``RadixAttention.forward``).

Both are seen by the observation on the CPU (what runs eagerly under breakable) and by ``replay.plain`` on the GPU
(where segments are cut).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Optional, Sequence

from . import _sglang_compat as sgl

Handler = Callable[[str, Callable[[], Any], tuple, dict], Any]
"""``handler(name, run, args, kwargs)``: called for each break-function call; ``run()`` calls the function."""


def resolve_break_ops(names: Sequence[str]) -> tuple[str, ...]:
    """Canonical op keys ('ns.op') of break ops, in order, each once.

    Raises:
        UsageError: a name that is malformed or names no op registered after loading the target.
    """
    from . import _torch_compat as compat
    from .errors import UsageError
    from .opnames import normalise_op_name

    out: list[str] = []
    for name in names:
        canon = normalise_op_name(name)
        if compat.resolve_op(canon) is None:
            raise UsageError(f"unknown break op {name!r}: no op {canon.replace('.', '::', 1)} is registered after loading the target")
        if canon not in out:
            out.append(canon)
    return tuple(out)


def function_name(callable_: Any) -> str:
    """The qualified name of an ``@eager_on_graph`` function ('RadixAttention.forward')."""
    fn = sgl.eager_function(callable_)
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn))


@contextlib.contextmanager
def eager_on_graph_calls(handler: Handler) -> Iterator[bool]:
    """While active, every call of an ``@eager_on_graph`` function (sglang's decorator) goes to ``handler``; calls
    made from inside a handled call run as they are. Yields whether sglang's decorator is loaded at all."""
    cls = sgl.eager_on_graph_type()
    if cls is None:
        yield False
        return
    original = cls.__call__
    depth = [0]

    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        if depth[0]:
            return sgl.run_eager(self, args, kwargs)
        depth[0] += 1
        try:
            return handler(function_name(self), lambda: sgl.run_eager(self, args, kwargs), args, kwargs)
        finally:
            depth[0] -= 1

    cls.__call__ = call  # type: ignore[method-assign]
    try:
        yield True
    finally:
        cls.__call__ = original  # type: ignore[method-assign]


_PLAIN = (int, float, bool, str, type(None))


def is_plain(value: Any) -> bool:
    """A Python value a break's closure would freeze and we can compare: a scalar, a string, None, or a tuple/list
    of them."""
    if isinstance(value, _PLAIN):
        return True
    return isinstance(value, (tuple, list)) and all(isinstance(v, _PLAIN) for v in value)


def python_arguments(args: Sequence[Any], kwargs: dict) -> dict[str, Any]:
    """A break call's plain Python arguments, by position ('arg1', counting tensors too) or keyword."""
    named = [(f"arg{i}", a) for i, a in enumerate(args)] + list(kwargs.items())
    return {key: value for key, value in named if is_plain(value)}


class Depth:
    """How deep the running code is inside break points (ops and functions), for a dispatch mode to read."""

    def __init__(self, break_ops: Sequence[str]) -> None:
        self.ops = frozenset(break_ops)
        self.level = 0
        self.on_enter: Optional[Callable[[], None]] = None
        """Called when the code enters a break point from outside (a segment ends there under breakable)."""

    def is_break_op(self, func: Any) -> bool:
        from .opnames import target_key

        return bool(self.ops) and target_key(func) in self.ops

    @property
    def inside(self) -> bool:
        return self.level > 0

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        if self.level == 0 and self.on_enter is not None:
            self.on_enter()
        self.level += 1
        try:
            yield
        finally:
            self.level -= 1

    def functions(self, on_call: Optional[Callable[[str, tuple, dict, Any], None]] = None) -> Any:
        """``eager_on_graph_calls`` that counts depth (and reports each call's name, arguments and output)."""

        def handler(name: str, run: Callable[[], Any], args: tuple, kwargs: dict) -> Any:
            with self.entered():
                out = run()
            if on_call is not None:
                on_call(name, args, kwargs, out)
            return out

        return eager_on_graph_calls(handler)
