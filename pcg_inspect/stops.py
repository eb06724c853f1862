"""How a run can stop before it ends: the ``timeout`` and ``target_exit`` findings, built in one place.

The pipeline builds them from a live stack (in-process), the supervisor from what a child left behind
(faulthandler dumps, ``exit.json``); both pass plain ``(file, line, function)`` frames here.
"""

from __future__ import annotations

from typing import Sequence

from .details import TargetExitDetails, TimeoutDetails
from .frames import is_user_file, source_line
from .report import Finding

RawFrame = tuple[str, int, str]

SLOW_TARGET = ("A forward that never returns (a loop on a tensor value, a wait on another rank, Dynamo unrolling an "
               "endless loop) hangs capture too: fix it, or raise --timeout if the target is only slow.")
SLOW_SETUP = ("No code of the target was running: pcg-inspect itself had not finished (importing torch takes 1-2 s, "
              "building a full-size layer or starting CUDA tens of seconds). Raise --timeout.")
EXITED = ("A layer, its factory and its module must return to the caller: an engine that loads it would end the same "
          "way. Raise an exception instead of exiting (and keep argument parsing, sys.exit and os._exit under "
          "`if __name__ == \"__main__\":`); a signal or a crash inside a kernel is a bug in that kernel.")


def _user(frames: Sequence[RawFrame], roots: Sequence[str]) -> list[RawFrame]:
    return [f for f in frames if is_user_file(f[0], roots)]


def timeout_finding(timeout_s: float, stage: str, frames: Sequence[RawFrame], roots: Sequence[str] = (),
                    who: str = "the run") -> Finding:
    """``timeout``: ``who`` hit --timeout in ``stage``; ``frames`` (outermost first) give the target's line when it ran."""
    mine = _user(frames, roots)
    stack = tuple(f"{f}:{n} in {fn}" for f, n, fn in (mine or list(frames))[-8:])
    last = mine[-1] if mine else None
    where = f" at {last[0]}:{last[1]}" if last else ", before the target's code ran" if stage == "import" else ""
    return Finding(
        kind="timeout", severity="error",
        message=f"{who} hit --timeout {timeout_s:g} s while in the {stage} stage{where}",
        file=last[0] if last else "", line=int(last[1] or 0) if last else 0, function=last[2] if last else "",
        code=source_line(last[0], int(last[1] or 0)) if last else "",
        hint=SLOW_TARGET if last else SLOW_SETUP,
        details=TimeoutDetails(stage=stage, timeout_s=timeout_s, stack=stack),
    )


def target_exit_finding(how: str, code: int, stage: str, frames: Sequence[RawFrame], roots: Sequence[str] = (),
                        who: str = "the target") -> Finding:
    """``target_exit``: ``who`` ended the process (or raised SystemExit) with ``how`` in ``stage``."""
    mine = _user(frames, roots)
    last = mine[-1] if mine else None
    where = f" at {last[0]}:{last[1]}" if last else ""
    return Finding(
        kind="target_exit", severity="error",
        message=f"{who} ended the run with {how} in the {stage} stage{where}: it must return, not exit the process",
        file=last[0] if last else "", line=int(last[1] or 0) if last else 0, function=last[2] if last else "",
        code=source_line(last[0], int(last[1] or 0)) if last else "", hint=EXITED,
        details=TargetExitDetails(stage=stage, how=how, code=code,
                                  stack=tuple(f"{f}:{n} in {fn}" for f, n, fn in (mine or list(frames))[-8:])),
    )


def parse_faulthandler(text: str, main_file: str = "", main_first: bool = False) -> list[RawFrame]:
    """The frames (outermost first) of one thread in a faulthandler dump: the thread that crashed ("Current
    thread") when there is one, else the thread whose stack holds ``main_file`` (the main thread), else the first.
    ``main_first``: the main thread even when another one crashed (where a stopped run's target was); a main stack
    too deep for faulthandler to show its outermost frames is the deepest one."""
    import re

    blocks = [b for b in re.split(r"\n(?=(?:Current thread|Thread) 0x)", text) if "File " in b]
    if not blocks:
        return []
    main = next((b for b in blocks if main_file and main_file in b), None)
    if main is None and main_first:  # faulthandler keeps 100 frames, innermost first: a deep main stack loses
        main = max(blocks, key=lambda b: b.count('File "'))  # its outermost (the worker's), but stays the deepest
    current = next((b for b in blocks if b.lstrip().startswith("Current thread")), None)
    chosen = (main or current or blocks[0]) if main_first else (current or main or blocks[0])
    frames = [(f, int(n), fn) for f, n, fn in re.findall(r'File "([^"]+)", line (\d+) in (\S+)', chosen)]
    return list(reversed(frames))  # faulthandler lists the innermost first
