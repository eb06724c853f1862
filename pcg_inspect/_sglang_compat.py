"""Every touch of sglang's private names lives here (as torch's do in ``_torch_compat``).

sglang is never imported for these: a target that uses a feature has imported it already, and importing
sglang costs seconds. Checked against sglang 0.5.23.
"""

from __future__ import annotations

import sys
from typing import Any, Optional

BCG_MODULE = "sglang.srt.model_executor.runner_backend_utils.breakable_cuda_graph.breakable_cuda_graph"
"""sglang 0.5.23's breakable CUDA graph (``eager_on_graph``, ``BreakableCUDAGraphCapture``)."""


def eager_on_graph_type() -> Optional[type]:
    """The class of the callables ``@eager_on_graph`` returns (``_EagerOnGraphCallable``: ``__call__`` is the
    graph-aware entry, ``_eager_call`` the undecorated function), or None when the target did not load it."""
    mod = sys.modules.get(BCG_MODULE)
    cls = getattr(mod, "_EagerOnGraphCallable", None) if mod is not None else None
    return cls if isinstance(cls, type) and hasattr(cls, "__call__") else None


def eager_function(callable_: Any) -> Any:
    """The function an ``_EagerOnGraphCallable`` wraps (bound methods: the partial's function)."""
    inner = getattr(callable_, "_eager_call", None)
    return getattr(inner, "func", inner)


def run_eager(callable_: Any, args: tuple, kwargs: dict) -> Any:
    """Call the undecorated function of an ``@eager_on_graph`` callable."""
    return callable_._eager_call(*args, **kwargs)
