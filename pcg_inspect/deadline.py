"""--timeout for the pipeline running in this process: interrupt the target, never hang.

On expiry a ``TraceTimeout`` (a BaseException, so no ``except Exception`` in the target or in
Dynamo swallows it) is raised in the thread running the pipeline: through SIGALRM when that is
the main thread (this also wakes a ``time.sleep``), else as an asynchronous exception. The
pipeline turns it into a report with a ``timeout`` finding. If the thread does not unwind within
``grace_s`` (stuck in C code), ``on_stuck`` gets the thread's stack and the process exits with
EXIT_TIMEOUT: a hang is never the outcome.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import traceback
from typing import Any, Callable, Optional

from .errors import EXIT_TIMEOUT, TraceTimeout

Stuck = Callable[[list[traceback.FrameSummary]], None]


class Deadline:
    """A context manager: the block must finish within ``timeout_s`` seconds (0: no limit)."""

    def __init__(self, timeout_s: float, on_stuck: Optional[Stuck] = None, grace_s: float = 20.0,
                 extra_stack: Optional[Callable[[], list[traceback.FrameSummary]]] = None) -> None:
        self.timeout_s = timeout_s
        self.on_stuck = on_stuck
        self.extra_stack = extra_stack
        """Frames the Python stack cannot show (the user line Dynamo is tracing), added when time runs out."""
        self.grace_s = grace_s
        self._done = threading.Event()
        self._thread_id = 0
        self._old_handler: Any = None
        self._use_signal = False

    def __enter__(self) -> "Deadline":
        if self.timeout_s <= 0:
            return self
        self._thread_id = threading.get_ident()
        self._use_signal = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
        if self._use_signal:
            self._old_handler = signal.signal(signal.SIGALRM, self._on_alarm)
            signal.setitimer(signal.ITIMER_REAL, self.timeout_s)
        threading.Thread(target=self._watch, name="pcg-inspect-deadline", daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._done.set()
        if self._use_signal:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._old_handler)

    def _on_alarm(self, signum: int, frame: Any) -> None:
        raise TraceTimeout(self.timeout_s, traceback.extract_stack(frame) + self._extra())

    def _extra(self) -> list[traceback.FrameSummary]:
        try:
            return list(self.extra_stack()) if self.extra_stack is not None else []
        except Exception:
            return []

    def _watch(self) -> None:
        if self._done.wait(self.timeout_s):
            return
        if not self._use_signal:  # no signal can reach this thread: an asynchronous exception
            _raise_in_thread(self._thread_id, self.timeout_s, _stack_of(self._thread_id) + self._extra())
        if self._done.wait(self.grace_s):
            return
        stack = _stack_of(self._thread_id)
        if self.on_stuck is not None:
            try:
                self.on_stuck(stack)
            except Exception:
                pass
        sys.stderr.flush()
        os._exit(EXIT_TIMEOUT)


def _stack_of(thread_id: int) -> list[traceback.FrameSummary]:
    frame = sys._current_frames().get(thread_id)
    return traceback.extract_stack(frame) if frame is not None else []


def _raise_in_thread(thread_id: int, timeout_s: float, stack: list[traceback.FrameSummary]) -> None:
    class _Expired(TraceTimeout):
        def __init__(self) -> None:
            super().__init__(timeout_s, stack)

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(_Expired))
