"""--timeout for the pipeline running in this process: interrupt the target, never hang.

On expiry a ``TraceTimeout`` (a BaseException, so no ``except Exception`` in the target or in
Dynamo swallows it) is raised in the thread running the pipeline: through SIGALRM when that is
the main thread (this also wakes a ``time.sleep``), else as an asynchronous exception. The
pipeline turns it into a report with a ``timeout`` finding and calls ``settle()`` on it; until then
the exception is raised again every ``RETRY_S`` (a handler that swallows it, or C code that turns
it into a warning, cannot lose the timeout). Inside ``shielded()`` (``import torch`` and other
library imports: an exception raised into torch's C++ initialisation aborts the process, one raised
into a half-run import leaves a half-initialised module behind) expiry is held and raised when the
block ends. If the thread does not unwind within ``grace_s`` (stuck in C code), ``on_stuck`` gets
the thread's stack and the process exits with EXIT_TIMEOUT: a hang is never the outcome.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import traceback
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

from .errors import EXIT_TIMEOUT, TraceTimeout

Stuck = Callable[[list[traceback.FrameSummary]], None]

RETRY_S = 1.0
"""How often an expired, not yet settled deadline raises again."""

_active = threading.local()
"""The Deadline running in this thread, for ``shielded()``."""


@contextmanager
def shielded() -> Iterator[None]:
    """Hold this thread's timeout while the block runs (library imports); raise it when the block ends."""
    deadline: Optional[Deadline] = getattr(_active, "deadline", None)
    if deadline is None:
        yield
        return
    deadline._shield += 1
    try:
        yield
    finally:
        deadline._shield -= 1
    if deadline._shield == 0 and deadline._held and not deadline._settled.is_set():
        deadline._held = False
        raise deadline._expired(traceback.extract_stack()[:-2])


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
        self._settled = threading.Event()
        self._shield = 0
        self._held = False
        self._outer: Optional[Deadline] = None

    def __enter__(self) -> "Deadline":
        if self.timeout_s <= 0:
            return self
        self._thread_id = threading.get_ident()
        self._outer, _active.deadline = getattr(_active, "deadline", None), self
        self._use_signal = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
        if self._use_signal:
            self._old_handler = signal.signal(signal.SIGALRM, self._on_alarm)
            signal.setitimer(signal.ITIMER_REAL, self.timeout_s, RETRY_S)  # repeats until settled
        threading.Thread(target=self._watch, name="pcg-inspect-deadline", daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._done.set()
        self._settle()
        _active.deadline = self._outer
        if self._use_signal:
            signal.signal(signal.SIGALRM, self._old_handler)

    def _settle(self) -> None:
        """The timeout was caught: raise it no more."""
        self._settled.set()
        if self._use_signal:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def _expired(self, stack: list[traceback.FrameSummary]) -> TraceTimeout:
        exc = TraceTimeout(self.timeout_s, stack + self._extra())
        exc.settle = self._settle
        return exc

    def _on_alarm(self, signum: int, frame: Any) -> None:
        if self._settled.is_set():
            return
        if self._shield:
            self._held = True
            return
        if isinstance(sys.exc_info()[1], TraceTimeout):
            # a timeout is being handled right now (ours settling it, or a target's except clause): another one
            # raised here would escape that handler (ours: the run ends with no report); the alarm repeats anyway
            return
        raise self._expired(_frames_of(frame))

    def _extra(self) -> list[traceback.FrameSummary]:
        try:
            return list(self.extra_stack()) if self.extra_stack is not None else []
        except Exception:
            return []

    def _watch(self) -> None:
        if self._done.wait(self.timeout_s):
            return
        waited = 0.0
        while not self._done.is_set() and waited < self.grace_s:
            if not self._use_signal and not self._settled.is_set():  # no signal reaches this thread
                self._raise_async()
            self._done.wait(RETRY_S)
            waited += RETRY_S
        if self._done.is_set():
            return
        stack = _stack_of(self._thread_id)
        if self.on_stuck is not None:
            try:
                self.on_stuck(stack)
            except Exception:
                pass
        sys.stderr.flush()
        os._exit(EXIT_TIMEOUT)

    def _raise_async(self) -> None:
        if self._shield:
            self._held = True
            return
        expired = self._expired(_stack_of(self._thread_id))

        class _Expired(TraceTimeout):
            def __init__(self) -> None:
                super().__init__(expired.timeout_s, expired.stack)
                self.settle = expired.settle

        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._thread_id), ctypes.py_object(_Expired))


def _stack_of(thread_id: int) -> list[traceback.FrameSummary]:
    frame = sys._current_frames().get(thread_id)
    return _frames_of(frame) if frame is not None else []


def _frames_of(frame: Any) -> list[traceback.FrameSummary]:
    """``frame``'s stack, outermost first, without reading source files: a signal handler stays short (the
    worker's stack dump must not meet it half-way: a dump racing a busy thread can crash the process)."""
    stack = traceback.StackSummary.extract(traceback.walk_stack(frame), lookup_lines=False)
    stack.reverse()
    return list(stack)
