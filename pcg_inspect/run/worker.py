"""The entry point of every child process (``python -m pcg_inspect.run.worker FOLDER``).

A child runs the target's code, so it is built to be contained by its parent: it reads one
``Request``, answers only with files in its folder and lines on its protocol pipe, and whatever
the target does it ends with ``os._exit`` (threads the target left running, non-daemon or not,
never keep it alive). Before the target runs it records how the process could end without an
answer: a fatal signal (faulthandler's dump in ``crash.txt``), ``os._exit`` (``exit.json``), or
the deadline (every thread's stack in ``stuck.txt``, a few seconds after it, for the parent that
then stops the process group). A process the target forks is silenced: it writes no answer and no
protocol line, and it ends as soon as it returns into pcg-inspect's code.
"""

from __future__ import annotations

import faulthandler
import json
import os
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, NoReturn, Optional

from .request import PROTO_FD_ENV, Answer, Request

STACK_AFTER_S = 2.5
"""How long after the deadline every thread's stack is dumped (the parent stops the child a little later): between
two of the deadline's repeated alarms (``deadline.RETRY_S`` apart, from the deadline on), so the dump does not run
while the main thread is in the alarm's handler (faulthandler's dump racing it crashed the child, leaving half a
dump without the target's line)."""

_MAIN_PID = os.getpid()
_REAL_EXIT = os._exit
"""``os._exit`` as Python made it (the target's calls go through ``_record_os_exit``'s wrapper)."""
_OWN_DIR = str(Path(__file__).resolve().parents[1])


def main(folder: str) -> NoReturn:
    """Do the request in ``folder`` and end the process (exit 0: the answer is in the files)."""
    out = Path(folder)
    request = Request.load(out)
    proto = _Protocol(int(os.environ.get(PROTO_FD_ENV, "-1")))
    crash = open(out / Answer.CRASH, "w", encoding="utf-8")  # noqa: SIM115  (open until the process ends)
    faulthandler.enable(file=crash, all_threads=True)
    if request.deadline > 0:
        stuck = open(out / Answer.STUCK, "w", encoding="utf-8")  # noqa: SIM115
        faulthandler.dump_traceback_later(max(0.1, request.deadline - time.time() + STACK_AFTER_S), file=stuck)
    os.register_at_fork(after_in_child=_contain_fork)
    _record_os_exit(out, proto)
    sys.argv = [_program_name(request.options.target)]  # argparse in the target names the target, not us
    try:
        _do_role(request, out, proto)
    except BaseException as exc:  # noqa: BLE001 - every way out becomes an answer
        _answer_error(out, exc)
    _end(0)


def _program_name(target: str) -> str:
    where = target.rpartition(":")[0] if ":" in target else target
    return where or target


class _Protocol:
    """Progress and stage lines to the parent, from the child itself only (never from a fork)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.stage = "import"

    def send(self, kind: str, text: str) -> None:
        if self.fd < 0 or os.getpid() != _MAIN_PID:
            return
        try:
            os.write(self.fd, f"{kind}\t{text.replace(chr(10), ' ')}\n".encode("utf-8", "replace"))
        except OSError:
            pass

    def progress(self, text: str) -> None:
        self.send("progress", text)

    def on_stage(self, name: str) -> None:
        self.stage = name
        self.send("stage", name)


def _do_role(request: Request, out: Path, proto: _Protocol) -> None:
    from .._io import write_atomic
    from ..options import RunContext
    from . import local

    options = request.options
    if request.role == "ops":
        import dataclasses as dc

        from ..opsaudit import audit_target

        _write_json(out / Answer.OPS, [dc.asdict(r) for r in audit_target(options, request.namespaces)])
        return
    if request.role == "reference":
        from ..tp import reference_findings

        _write_json(out / Answer.FINDINGS, reference_findings(options, list(request.outputs)))
        return
    context = RunContext(request.rank, request.world_size, request.bisect)
    if request.role == "rank":
        _init_rank(options, context, request.port, request.deadline)
        options = replace(options, device=f"cuda:{context.rank}") if options.device.startswith("cuda") else options
    try:
        run = local.pipeline(options, proto.progress, context, _checkpoint(out), deadline=request.deadline,
                             on_stage=proto.on_stage)
        if os.getpid() != _MAIN_PID:
            return
        write_atomic(out / Answer.REPORT, run.report.to_json(indent=None))
        if request.role == "rank" and run.target is not None:
            _save_rank_output(run.target, out / Answer.OUTPUT)
    finally:
        if request.role == "rank":
            _leave_rank()


def _checkpoint(out: Path) -> Callable[[Any], None]:
    from .._io import write_atomic

    def save(report: Any) -> None:
        if os.getpid() == _MAIN_PID:
            write_atomic(out / Answer.CHECKPOINT, report.to_json(indent=None))

    return save


def _answer_error(out: Path, exc: BaseException) -> None:
    from ..errors import PcgInspectError, ReportError, TargetError, UsageError

    if os.getpid() != _MAIN_PID:
        return
    kind = ("usage" if isinstance(exc, UsageError) else "target" if isinstance(exc, TargetError)
            else "report" if isinstance(exc, ReportError) else "internal")
    message = str(exc) if isinstance(exc, PcgInspectError) else f"{type(exc).__name__}: {exc}"
    _write_json(out / Answer.ERROR, {"kind": kind, "message": message, "traceback": traceback.format_exc()})


def _record_os_exit(out: Path, proto: _Protocol) -> None:
    """Wrap ``os._exit`` so a target that calls it leaves its code and stack behind (the call itself is unchanged)."""
    def _exit(code: int) -> NoReturn:
        if os.getpid() == _MAIN_PID:
            stack = traceback.extract_stack()[:-1]
            try:
                (out / Answer.EXIT).write_text(json.dumps({
                    "code": code, "how": f"os._exit({code})", "stage": proto.stage,
                    "stack": [[f.filename, f.lineno, f.name] for f in stack]}), encoding="utf-8")
            except OSError:
                pass
        _REAL_EXIT(code)

    os._exit = _exit  # type: ignore[assignment]


def _end(code: int) -> NoReturn:
    """End now: no atexit handler of the target, no wait for the threads it left running."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    _REAL_EXIT(code)


def _contain_fork() -> None:
    """In a process the target forked: end it when it returns into pcg-inspect's code (it must not run our pipeline)."""
    def on_event(frame: Any, event: str, arg: Any) -> Optional[Callable[..., Any]]:
        if event == "return":
            caller = frame.f_back
            if caller is not None and caller.f_code.co_filename.startswith(_OWN_DIR) \
                    and not frame.f_code.co_filename.startswith(_OWN_DIR):
                _end(0)
        return None

    sys.setprofile(on_event)


def _init_rank(options: Any, context: Any, port: int, deadline: float) -> None:
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    cuda = options.device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(context.rank)
    left = deadline - time.time() if deadline > 0 else 3600.0  # a collective waits no longer than the run may
    dist.init_process_group("nccl" if cuda else "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=context.rank,
                            world_size=context.world_size, timeout=timedelta(seconds=max(10.0, left)))


def _leave_rank() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def _save_rank_output(target: Any, path: Path) -> None:
    """This rank's eager output at the largest size (what the reference compares)."""
    import torch

    call = max(target.calls, key=lambda c: c.tokens or 0)
    with torch.no_grad():
        out = target.module(*call.args, **call.kwargs)
    torch.save(out.detach().cpu() if isinstance(out, torch.Tensor) else out, path)


def _write_json(path: Path, data: Any) -> None:
    from .._io import write_atomic

    write_atomic(path, json.dumps(data))


if __name__ == "__main__":
    main(sys.argv[1])
