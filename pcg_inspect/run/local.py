"""The pipeline in the process that calls it, under the run's deadline (a child's job, or the API's live objects)."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any, Callable, Optional

from ..options import RunContext, TraceOptions

Progress = Callable[[str], None]


def pipeline(options: TraceOptions, progress: Optional[Progress], context: RunContext,
             checkpoint: Optional[Callable[[Any], None]], target_object: Any = None, deadline: float = 0.0,
             on_stage: Optional[Callable[[str], None]] = None) -> Any:
    """``pipeline.run`` under a ``Deadline``: until ``deadline`` (wall clock) when given, else ``options.timeout``.

    The target's own prints go to stderr: stdout carries only what the front end prints (JSON with ``--json -``).
    """
    from ..deadline import Deadline
    from ..pipeline import run

    seconds = options.timeout if deadline <= 0 else max(0.05, deadline - time.time())
    with Deadline(seconds, extra_stack=_dynamo_stack, grace_s=3600.0 if deadline > 0 else 20.0), \
            contextlib.redirect_stdout(sys.stderr):
        return run(options, context, progress, checkpoint, target_object, on_stage=on_stage)


def _dynamo_stack() -> list[Any]:
    if "torch" not in sys.modules:
        return []
    from .. import _torch_compat as compat

    return compat.dynamo_user_stack()
