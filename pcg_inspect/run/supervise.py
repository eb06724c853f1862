"""Children: start one, wait for several under one deadline, stop a process group, read what a child left.

The parent owns the clock, the signals and the files. A child runs in its own session and process
group (a terminal's Ctrl-C reaches only the parent, which stops the children), with stdin closed;
what it prints (the target's output, torch's warnings) comes back line by line to ``echo``; its
progress comes on a pipe of its own. When the deadline has passed by ``GRACE_S`` the parent stops
the whole group (SIGTERM, then SIGKILL), so neither a stuck kernel, nor a thread the target left
running, nor a process it forked outlives the run. Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ..errors import ReportError, TargetError, UsageError
from ..options import TraceOptions
from ..report import SCHEMA_VERSION, Environment, Finding, Replay, Report, build_summary, load_report, with_summary
from .request import PROTO_FD_ENV, Answer, Request

Progress = Callable[[str], None]
Echo = Callable[[str], None]

GRACE_S = 6.0
"""After the deadline, how long a child has to write its own timeout report before its group is stopped."""
KILL_AFTER_S = 2.0
"""After SIGTERM, how long before SIGKILL."""
_WORKER_FILE = str(Path(__file__).resolve().parent / "worker.py")
"""The main thread of a child is the one whose stack holds the worker's entry point."""


@dataclass
class Child:
    """A running child: its folder, process, what it printed, and the stage it last said it was in."""

    folder: Path
    proc: subprocess.Popen
    label: str
    stage: str = "import"
    ended: float = 0.0
    """Wall-clock time the child's process ended (seen by ``wait``)."""
    lines: list[str] = field(default_factory=list)
    readers: list[threading.Thread] = field(default_factory=list)

    def file(self, name: str) -> Path:
        return self.folder / name


def start(folder: Path, request: Request, progress: Optional[Progress] = None, echo: Optional[Echo] = None,
          label: str = "") -> Child:
    """Start a child for ``request`` in ``folder`` (created)."""
    from ..tp import NO_MULTICAST

    folder.mkdir(parents=True, exist_ok=True)
    request.save(folder)
    proto_r, proto_w = os.pipe()
    env = dict(os.environ, PYTHONUNBUFFERED="1", **NO_MULTICAST, **{PROTO_FD_ENV: str(proto_w)})
    with _no_interrupts():  # a Ctrl-C between Popen and the caller holding the child would orphan it
        try:
            proc = subprocess.Popen([sys.executable, "-m", "pcg_inspect.run.worker", str(folder)],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True, pass_fds=(proto_w,))
        finally:
            os.close(proto_w)
    child = Child(folder, proc, label)
    child.readers = [threading.Thread(target=_read_protocol, args=(child, proto_r, progress), daemon=True),
                     threading.Thread(target=_read_output, args=(child, echo), daemon=True)]
    for t in child.readers:
        t.start()
    return child


def _read_protocol(child: Child, fd: int, progress: Optional[Progress]) -> None:
    with os.fdopen(fd, "r", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            kind, _, text = line.rstrip("\n").partition("\t")
            if kind == "stage":
                child.stage = text
            elif kind == "progress" and progress is not None:
                progress(text)


def _read_output(child: Child, echo: Optional[Echo]) -> None:
    assert child.proc.stdout is not None
    for raw in iter(child.proc.stdout.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip("\n")
        child.lines = (child.lines + [line])[-200:]
        if echo is not None and line.strip():
            echo(line)


def start_all(starts: Sequence[Callable[[], Child]]) -> list[Child]:
    """Start several children; if starting one fails (or Ctrl-C comes), the ones already started are stopped."""
    started: list[Child] = []
    try:
        for make in starts:
            started.append(make())
    except BaseException:
        with _no_interrupts():
            for c in started:
                stop(c)
        raise
    return started


def wait(children: Sequence[Child], deadline: float) -> list[int]:
    """Wait for every child until ``deadline`` (wall clock; 0: none) plus ``GRACE_S``; stop every child's process
    group (the late ones, and whatever the others forked). Returns the indices of the children stopped late.

    On any exception (Ctrl-C included) every child is stopped before it propagates.
    """
    late = []
    try:
        for i, c in enumerate(children):
            limit = None if deadline <= 0 else max(0.05, deadline + GRACE_S - time.time())
            try:
                c.proc.wait(limit)
                c.ended = c.ended or time.time()
            except subprocess.TimeoutExpired:
                late.append(i)
                _give_stack_time(c)
    except BaseException:
        with _no_interrupts():
            for c in children:
                stop(c)
        raise
    with _no_interrupts():
        for c in children:
            stop(c)
    for c in children:
        for t in c.readers:
            t.join(2.0)
    return late


def _give_stack_time(child: Child) -> None:
    """The child dumps its stacks shortly after the deadline: wait (briefly) for the whole dump before stopping it.
    The dump is written thread by thread, the newest thread (our deadline watcher) first: a file that is merely not
    empty can still lack the main thread, where the target is, so it must also stop growing."""
    path = child.file(Answer.STUCK)
    size = -1
    for _ in range(20):
        now = path.stat().st_size if path.exists() else 0
        if now > 0 and now == size:
            return
        size = now
        time.sleep(0.1)


def stop(child: Child) -> None:
    """Stop the child's whole process group: SIGTERM, then SIGKILL; also when the child itself already ended."""
    pgid = child.proc.pid
    if child.proc.poll() is None:
        _signal_group(pgid, signal.SIGTERM)
        try:
            child.proc.wait(KILL_AFTER_S)
        except subprocess.TimeoutExpired:
            pass
    _signal_group(pgid, signal.SIGKILL)  # forks and threads the target left behind
    child.proc.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class _no_interrupts:
    """Hold Ctrl-C while children are started or stopped (it is delivered when the block ends: a child is
    never left running unseen, and a second Ctrl-C cannot interrupt the stopping)."""

    def __enter__(self) -> None:
        self.old: Any = None
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "pthread_sigmask"):
            self.old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})

    def __exit__(self, *exc: Any) -> None:
        if self.old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self.old)


# ---------------------------------------------------------------- what a child left


def collect(child: Child, options: TraceOptions, late: bool, roots: Sequence[str] = (), who: str = "",
            deadline: float = 0.0) -> Report:
    """The child's report; its error raised here; a child that was stopped or died still gives a report.

    A child that died on its own after ``deadline`` is a timeout too: the run was being stopped (an exception raised
    into a thread stuck in C code can take the process down), so it is not the target's exit.

    Raises:
        UsageError, TargetError, ReportError: the child's own typed error.
        RuntimeError: a bug in pcg-inspect inside the child.
    """
    if child.file(Answer.REPORT).exists():
        return load_report(str(child.file(Answer.REPORT)))
    if child.file(Answer.ERROR).exists():
        raise_error(json.loads(child.file(Answer.ERROR).read_text(encoding="utf-8")))
    from ..stops import timeout_finding

    base = _checkpoint(child) or empty_report(options)
    if late or (deadline > 0 and child.ended >= deadline):
        frames = _dump_frames(child.file(Answer.STUCK), main_first=True) or _dump_frames(child.file(Answer.CRASH), main_first=True)
        found = timeout_finding(options.timeout, child.stage, frames, roots, who=who or "the run")
        return with_summary(base, findings=base.findings + (found,))
    found = exit_finding(child, roots, who=who or "the target")
    if child.stage == "replay" and base.replay is None:
        note = f"the process ended during replay: {found.message}"
        return with_summary(base, findings=base.findings + (found,),
                            replay=Replay(options.device, "cuda-graph-isolated" if options.isolate else "cuda-graph",
                                          "error", (), note))
    return with_summary(base, findings=base.findings + (found,))


def exit_finding(child: Child, roots: Sequence[str], who: str = "the target") -> Finding:
    """``target_exit`` for a child that ended without an answer: os._exit (its record), a signal (faulthandler's
    dump), or a plain exit code."""
    from ..stops import target_exit_finding

    code = child.proc.returncode if child.proc.returncode is not None else -1
    record = child.file(Answer.EXIT)
    if record.exists():
        data = json.loads(record.read_text(encoding="utf-8"))
        frames = [(f, int(n), fn) for f, n, fn in data.get("stack", [])]
        return target_exit_finding(data.get("how", f"os._exit({code})"), int(data.get("code", code)),
                                   data.get("stage") or child.stage, frames, roots, who)
    if code < 0:
        try:
            how = f"signal {signal.Signals(-code).name}"
        except ValueError:
            how = f"signal {-code}"
        frames = _dump_frames(child.file(Answer.CRASH))
        return target_exit_finding(how, code, child.stage, frames, roots, who)
    last = last_error_line(child.lines)
    how = f"exit code {code}" + (f" ({last})" if last else "")
    return target_exit_finding(how, code, child.stage, [], roots, who)


def _dump_frames(path: Path, main_first: bool = False) -> list[tuple[str, int, str]]:
    from ..stops import parse_faulthandler

    if not path.exists():
        return []
    return parse_faulthandler(path.read_text(encoding="utf-8", errors="replace"), main_file=_WORKER_FILE, main_first=main_first)


def _checkpoint(child: Child) -> Optional[Report]:
    try:
        return load_report(str(child.file(Answer.CHECKPOINT))) if child.file(Answer.CHECKPOINT).exists() else None
    except ReportError:
        return None


def raise_error(err: dict[str, Any]) -> None:
    """Raise a child's typed error in this process."""
    kinds: dict[str, type[Exception]] = {"usage": UsageError, "target": TargetError, "report": ReportError}
    cls = kinds.get(err.get("kind", ""))
    if cls is not None:
        raise cls(err.get("message", ""))
    raise ChildBug(err.get("message", "the worker failed"), err.get("traceback", ""))


class ChildBug(RuntimeError):
    """A bug in pcg-inspect inside a child; ``child_traceback`` is its traceback (shown with --debug)."""

    def __init__(self, message: str, child_traceback: str) -> None:
        super().__init__(f"{message} (in the worker process)")
        self.child_traceback = child_traceback


def empty_report(options: TraceOptions, findings: tuple[Finding, ...] = ()) -> Report:
    """A report with nothing traced (a run that stopped before its first checkpoint)."""
    return Report(SCHEMA_VERSION, Environment.of_run(options), build_summary((), (), findings, (), (), None, options.judged_backends, (), options.default_backend), (), findings, (), (), (), (), ())


def last_error_line(lines: Sequence[str]) -> str:
    """The child's last line that reads like an error (else its last line)."""
    for ln in reversed(lines):
        if "Error" in ln or "error" in ln:
            return ln.strip()[:400]
    return lines[-1].strip()[:400] if lines else ""
