"""Where the pipeline runs, and every child process: the GPU worker, the ranks, the sides of ``diff``.

``trace(options)`` is what a front end (the CLI, the Python API) calls:

- CPU, one rank: the pipeline runs in this process, under ``--timeout``;
- ``--device cuda``: the whole pipeline runs once in one worker process (torch imported, the
  target built and traced once); this process only supervises, so a CUDA error that poisons the
  context costs the worker, and the checkpoint it wrote before replay still gives the report;
- ``--nproc N``: N rank workers over torch.distributed, then a single-rank reference worker;
  ``tp.merge`` folds their reports.

A child gets its request (the serialised ``TraceOptions`` and its role) as one JSON file, never
as a rebuilt command line, and answers with files in its folder. Children run in their own
session (a terminal Ctrl-C reaches only this process, which stops them) and are killed when the
deadline passes. Only front ends import this module; it imports the pipeline, never the reverse.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

from . import __version__
from .details import TimeoutDetails
from .errors import PcgInspectError, ReportError, TargetError, UsageError
from .options import Bisect, RunContext, TraceOptions
from .report import SCHEMA_VERSION, Environment, Finding, Replay, Report, build_summary, load_report, with_summary

Progress = Callable[[str], None]
PROGRESS_PREFIX = "pcg-progress: "
GRACE_S = 30.0
"""How long past the deadline a child may take to write its own timeout report before it is killed."""
STARTUP_S = 120.0
"""Extra time a child gets to start (import torch, initialise CUDA) beyond the run's --timeout."""


def trace(options: TraceOptions, progress: Optional[Progress] = None) -> Report:
    """Run the pipeline for ``options`` where it belongs and return its report.

    Raises:
        UsageError, TargetError: bad options or a target that cannot be loaded (from a child too).
    """
    options.validate()
    check_model_options(options)
    if options.nproc > 1:
        return _run_ranks(options, progress)
    if options.device.startswith("cuda"):
        return run_in_child(options, progress)
    return run_here(options, progress)


def check_model_options(options: TraceOptions) -> None:
    """Model-only options on a file target are an error, not silently ignored."""
    from .models import is_model_spec

    if not options.model.is_default() and not is_model_spec(options.target):
        raise UsageError("--layers, --num-layers, --attn and --override apply to model targets only, "
                         f"not to {options.target!r} (a file:factory target builds its own module)")


def run_here(options: TraceOptions, progress: Optional[Progress] = None) -> Report:
    """The pipeline in this process, under the options' deadline."""
    return _pipeline(options, progress, RunContext(), None).report


def trace_object(obj: Any, args: Any, kwargs: Any, options: TraceOptions, progress: Optional[Progress] = None) -> Report:
    """An in-memory target (the API): always in this process (an object cannot cross to a worker)."""
    options.validate()
    return _pipeline(options, progress, RunContext(), None, (obj, args, kwargs)).report


def _pipeline(options: TraceOptions, progress: Optional[Progress], context: RunContext,
              checkpoint: Optional[Callable[[Report], None]], target_object: Any = None) -> Any:
    import contextlib

    from .deadline import Deadline
    from .pipeline import run

    # The target's own prints go to stderr: stdout carries only what we print (JSON with --json -).
    with Deadline(options.timeout_s, on_stuck=_say_stuck(options), extra_stack=_dynamo_stack), \
            contextlib.redirect_stdout(sys.stderr):
        return run(options, context, progress, checkpoint, target_object)


def _dynamo_stack() -> list[Any]:
    if "torch" not in sys.modules:
        return []
    from . import _torch_compat as compat

    return compat.dynamo_user_stack()


def side(spec: str, options: TraceOptions) -> Report:
    """One side of ``diff``: a report file, or a target traced in a child with ``options`` (all of them).

    Two versions of one file register the same custom-op names, which one process cannot hold,
    so every traced side gets its own process.
    """
    if spec.endswith(".json") or (os.path.isfile(spec) and ":" not in os.path.basename(spec)):
        return load_report(spec)
    return run_in_child(replace(options, target=spec), None)


# ---------------------------------------------------------------- one child


@dataclass
class _Child:
    """A running worker: its folder, process, and what it printed."""

    folder: Path
    proc: subprocess.Popen
    lines: list[str] = field(default_factory=list)
    reader: Optional[threading.Thread] = None

    def file(self, name: str) -> Path:
        return self.folder / name


def run_in_child(options: TraceOptions, progress: Optional[Progress] = None) -> Report:
    """The whole pipeline in one worker process; this process supervises and reads its report."""
    with tempfile.TemporaryDirectory(prefix="pcg-inspect-") as tmp:
        child = _start(Path(tmp), "trace", options, progress)
        timed_out = _wait([child], _deadline(options))
        report = _collect(child, options, timed_out)
    return _continue_bisections(report, options, progress)


MAX_BISECT_WORKERS = 8


def _continue_bisections(report: Report, options: TraceOptions, progress: Optional[Progress]) -> Report:
    """A capture failure whose bisection a sticky CUDA error stopped: go on narrowing it, one fresh worker
    per attempt, until one op is left (the worker's own in-process search runs while the context lives)."""
    for _ in range(MAX_BISECT_WORKERS):
        pending = next((f for f in report.findings if f.kind == "capture_failed" and len(f.details.searched) == 2), None)
        if pending is None:
            return report
        d = pending.details
        if progress:
            progress(f"narrowing the capture failure of piece {d.piece} in a fresh process")
        found = _bisect_in_child(options, d)
        if found is None:
            return with_summary(report, findings=tuple(replace(f, details=replace(f.details, searched=())) if f is pending else f
                                                       for f in report.findings))
        report = with_summary(report, findings=tuple(found if f is pending else f for f in report.findings))
    return report


def _bisect_in_child(options: TraceOptions, d: Any) -> Optional[Finding]:
    opts = replace(options, capture_sizes=(d.capture_size,), observe_ops=False)
    request = {"capture_size": d.capture_size, "graph": d.graph, "piece": d.piece, "phase": d.phase,
               "lo": d.searched[0], "hi": d.searched[1]}
    with tempfile.TemporaryDirectory(prefix="pcg-inspect-bisect-") as tmp:
        child = _start(Path(tmp), "bisect", opts, None, bisect=request)
        _wait([child], _deadline(opts))
        if not child.file("report.json").exists():
            return None
        result = load_report(str(child.file("report.json")))
    return next((f for f in result.findings if f.kind == "capture_failed"), None)


def _start(folder: Path, role: str, options: TraceOptions, progress: Optional[Progress], **extra: Any) -> _Child:
    folder.mkdir(parents=True, exist_ok=True)
    request = {"role": role, "options": options.to_dict(), "tool_version": __version__, **extra}
    (folder / "request.json").write_text(json.dumps(request), encoding="utf-8")
    env = dict(os.environ, PYTHONUNBUFFERED="1", **_no_multicast())
    proc = subprocess.Popen([sys.executable, "-m", "pcg_inspect.launch", str(folder)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    child = _Child(folder, proc)
    child.reader = threading.Thread(target=_read_stderr, args=(child, progress), daemon=True)
    child.reader.start()
    return child


def _read_stderr(child: _Child, progress: Optional[Progress]) -> None:
    assert child.proc.stderr is not None
    for line in child.proc.stderr:
        line = line.rstrip("\n")
        if line.startswith(PROGRESS_PREFIX):
            if progress is not None:
                progress(line[len(PROGRESS_PREFIX):])
        elif line.strip():
            child.lines = (child.lines + [line])[-200:]


def _deadline(options: TraceOptions) -> Optional[float]:
    return time.monotonic() + options.timeout_s + STARTUP_S + GRACE_S if options.timeout_s > 0 else None


def _wait(children: list[_Child], deadline: Optional[float]) -> list[int]:
    """Wait for every child; kill those past the deadline. Returns the indices of those killed."""
    killed = []
    try:
        for i, c in enumerate(children):
            left = None if deadline is None else max(0.1, deadline - time.monotonic())
            try:
                c.proc.wait(left)
            except subprocess.TimeoutExpired:
                killed.append(i)
                _kill(c)
    except BaseException:  # Ctrl-C, or our own error: no child outlives us
        for c in children:
            _kill(c)
        raise
    for c in children:
        if c.reader is not None:
            c.reader.join(5)
    return killed


def _kill(child: _Child) -> None:
    if child.proc.poll() is not None:
        return
    try:
        os.killpg(child.proc.pid, signal.SIGTERM)
        child.proc.wait(5)
    except (ProcessLookupError, subprocess.TimeoutExpired, PermissionError):
        try:
            os.killpg(child.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        child.proc.wait()


def _collect(child: _Child, options: TraceOptions, killed: bool) -> Report:
    """The child's report; its error raised here; a dead or stuck child still gives a report."""
    if child.file("report.json").exists():
        return load_report(str(child.file("report.json")))
    if child.file("error.json").exists():
        _raise_child_error(json.loads(child.file("error.json").read_text(encoding="utf-8")))
    base = _checkpoint(child) or _empty_report(options)
    if killed:
        return with_summary(base, findings=base.findings + (_child_timeout(child, options),))
    why = f"the worker process died (exit {child.proc.returncode}{_signal_name(child.proc.returncode)})"
    last = _last_error_line(child.lines)
    if base.replay is None and child.file("checkpoint.json").exists():
        note = f"{why} during replay: {last}".strip().rstrip(":")
        return with_summary(base, replay=Replay(options.device, "cuda-graph-isolated" if options.isolate else "cuda-graph",
                                                "error", (), note))
    raise TargetError(f"{why} while loading or tracing the target: {last}".rstrip(": "))


def _checkpoint(child: _Child) -> Optional[Report]:
    try:
        return load_report(str(child.file("checkpoint.json"))) if child.file("checkpoint.json").exists() else None
    except ReportError:
        return None


def _raise_child_error(err: dict[str, Any]) -> None:
    kinds: dict[str, type[Exception]] = {"UsageError": UsageError, "TargetError": TargetError, "ReportError": ReportError}
    cls = kinds.get(err.get("type", ""))
    if cls is not None:
        raise cls(err.get("message", ""))
    raise RuntimeError(f"{err.get('message', 'the worker failed')} (in the worker process)")


def _child_timeout(child: _Child, options: TraceOptions) -> Finding:
    stack = _stuck_stack(child.file("stuck.txt"))
    last = stack[-1] if stack else ("", 0, "")
    return Finding(
        kind="timeout", severity="error",
        message=f"the worker did not finish within --timeout {options.timeout_s:g} s" + (f"; it was at {last[0]}:{last[1]}" if last[0] else ""),
        file=last[0], line=last[1], function=last[2],
        hint="A forward that never returns hangs capture too: fix it, or raise --timeout if the target is only slow.",
        details=TimeoutDetails(stage="worker", timeout_s=options.timeout_s, stack=tuple(f"{f}:{n} in {fn}" for f, n, fn in stack[-8:])),
    )


def _stuck_stack(path: Path) -> list[tuple[str, int, str]]:
    """Frames of the main thread from a faulthandler dump (most recent call last)."""
    import re

    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    block = text.split("Current thread", 1)[-1] if "Current thread" in text else text
    frames = re.findall(r'File "([^"]+)", line (\d+) in (\S+)', block)
    return [(f, int(n), fn) for f, n, fn in reversed(frames)]  # faulthandler lists the innermost first


def _empty_report(options: TraceOptions, findings: tuple[Finding, ...] = ()) -> Report:
    import platform

    env = Environment(tool_version=__version__, torch_version="", python_version=platform.python_version(),
                      platform=f"{platform.system()} {platform.machine()}", device=options.device,
                      dtype=options.dtype or "as built", command=options.command, target=options.target,
                      capture_sizes=options.capture_sizes, dynamic=options.dynamic)
    return Report(SCHEMA_VERSION, env, build_summary((), (), findings, (), (), None), (), findings, (), (), (), (), ())


def _last_error_line(lines: list[str]) -> str:
    for ln in reversed(lines):
        if "Error" in ln or "error" in ln:
            return ln.strip()[:400]
    return lines[-1].strip()[:400] if lines else ""


def _signal_name(code: Optional[int]) -> str:
    if code is not None and code < 0:
        try:
            return f", {signal.Signals(-code).name}"
        except ValueError:
            return ""
    return ""


def _no_multicast() -> dict[str, str]:
    from .tp import NO_MULTICAST

    return dict(NO_MULTICAST)


def _say_stuck(options: TraceOptions) -> Callable[[list[Any]], None]:
    def say(stack: list[Any]) -> None:
        where = f" at {stack[-1].filename}:{stack[-1].lineno}" if stack else ""
        sys.stderr.write(f"error: timed out after {options.timeout_s:g} s and the target did not stop{where} (stuck in C code)\n")

    return say


# ---------------------------------------------------------------- ranks


def _run_ranks(options: TraceOptions, progress: Optional[Progress]) -> Report:
    from .tp import merge

    n = options.nproc
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="pcg-inspect-tp-") as tmp:
        if progress:
            progress(f"tracing {n} ranks")
        ranks = [_start(Path(tmp) / f"rank{r}", "rank", options, _prefixed(progress, f"rank {r}: "),
                        rank=r, world_size=n, port=port) for r in range(n)]
        killed = _wait(ranks, _deadline(options))
        reports, errors = _rank_results(ranks, killed, options)
        if progress:
            progress("single-rank reference")
        outputs = [str(c.file("output.pt")) for c in ranks if c.file("output.pt").exists()]
        ref = _start(Path(tmp) / "reference", "reference", options, None, outputs=outputs)
        _wait([ref], _deadline(options))
        mismatches = _reference_findings(ref)
    return merge(reports, errors, killed, mismatches, n, options.timeout_s)


def _prefixed(progress: Optional[Progress], prefix: str) -> Optional[Progress]:
    return (lambda msg: progress(prefix + msg)) if progress is not None else None


def _rank_results(ranks: list[_Child], killed: list[int], options: TraceOptions) -> tuple[dict[int, Report], dict[int, str]]:
    reports, errors = {}, {}
    for r, c in enumerate(ranks):
        if c.file("report.json").exists():
            reports[r] = load_report(str(c.file("report.json")))
        elif c.file("error.json").exists():
            err = json.loads(c.file("error.json").read_text(encoding="utf-8"))
            if r == 0 and err.get("type") in ("UsageError", "TargetError"):
                _raise_child_error(err)
            errors[r] = f"{err.get('type')}: {err.get('message')}"
        elif r not in killed:
            errors[r] = f"exit {c.proc.returncode}: {_last_error_line(c.lines)}"
    return reports, errors


def _reference_findings(child: _Child) -> list[Finding]:
    path = child.file("findings.json")
    if not path.exists():
        return []
    from .report import from_jsonable

    return [from_jsonable(Finding, f) for f in json.loads(path.read_text(encoding="utf-8"))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- inside a child


def worker_main(folder: str) -> int:
    """Entry point of every child: read the request, do the role, answer with files. Returns the exit code."""
    import faulthandler

    out = Path(folder)
    request = json.loads((out / "request.json").read_text(encoding="utf-8"))
    options = TraceOptions.from_dict(request["options"])
    stuck = open(out / "stuck.txt", "w", encoding="utf-8")  # noqa: SIM115  (open until exit)
    if options.timeout_s > 0:
        faulthandler.dump_traceback_later(options.timeout_s + GRACE_S, exit=True, file=stuck)
    try:
        _do_role(request, options, out)
    except PcgInspectError as exc:
        _write_json(out / "error.json", {"type": type(exc).__name__, "message": str(exc)})
    except Exception as exc:  # a bug: the parent reports it as one
        import traceback

        _write_json(out / "error.json", {"type": "Internal", "message": f"{type(exc).__name__}: {exc}",
                                         "traceback": traceback.format_exc()})
    return 0


def _do_role(request: dict[str, Any], options: TraceOptions, out: Path) -> None:
    from ._io import write_atomic

    def say(msg: str) -> None:
        print(PROGRESS_PREFIX + msg, file=sys.stderr, flush=True)

    role = request["role"]
    if role == "reference":
        _write_json(out / "findings.json", _reference(options, request["outputs"]))
        return
    bisect = Bisect(**request["bisect"]) if role == "bisect" else None
    context = RunContext(request.get("rank", 0), request.get("world_size", 1), bisect)
    if role == "rank":
        _init_rank(options, context, request["port"])
        options = replace(options, device=f"cuda:{context.rank}") if options.device.startswith("cuda") else options
    try:
        run = _pipeline(options, say, context, lambda r: write_atomic(out / "checkpoint.json", r.to_json(indent=None)))
        write_atomic(out / "report.json", run.report.to_json(indent=None))
        if role == "rank" and run.target is not None:
            _save_rank_output(run.target, out / "output.pt")
    finally:
        if role == "rank":
            _leave_rank()


def _init_rank(options: TraceOptions, context: RunContext, port: int) -> None:
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    cuda = options.device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(context.rank)
    dist.init_process_group("nccl" if cuda else "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=context.rank,
                            world_size=context.world_size, timeout=timedelta(seconds=max(60.0, options.timeout_s or 600.0)))


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


def _reference(options: TraceOptions, outputs: list[str]) -> list[dict[str, Any]]:
    """tp_mismatch findings: each rank's output against the same target at world_size=1."""
    import torch

    from .details import TpMismatchDetails
    from .load import load
    from .replay import compare
    from .report import to_jsonable

    device = "cuda:0" if options.device.startswith("cuda") else "cpu"  # a full-size layer is slow on a CPU
    target = load(options.target, options.capture_sizes, device, options.torch_dtype_name, options.model, 0, 1)
    call = max(target.calls, key=lambda c: c.tokens or 0)
    with torch.no_grad():
        reference = target.module(*call.args, **call.kwargs)
    out = []
    for path in outputs:
        rank = int(Path(path).parent.name.removeprefix("rank"))
        got = torch.load(path, map_location=device)
        abs_e, rel_e, _ = compare(got, reference)
        rel = relative_rmse(got, reference)
        limit = TP_RELATIVE_RMSE.get(str(reference.dtype).replace("torch.", ""), 1e-4)
        if rel > limit:  # a sum over ranks rounds differently: elementwise tolerances flag bf16 noise
            out.append(to_jsonable(Finding(
                kind="tp_mismatch", severity="error",
                message=f"rank {rank}'s output differs from the single-rank reference (relative RMSE {rel:.3g} > {limit:g}, "
                f"max abs err {abs_e:.3g}): the shards or the collectives do not add up to the full layer",
                details=TpMismatchDetails(rank=rank, max_abs_err=abs_e, max_rel_err=rel_e, relative_rmse=rel))))
    return out


TP_RELATIVE_RMSE = {"bfloat16": 3e-2, "float16": 1e-2, "float32": 1e-4, "float64": 1e-9}
"""||rank output - reference|| / ||reference|| above which the ranks do not add up: a wrong shard is O(1);
rounding the partial sums of a bf16 layer is ~1e-2 (fp32: ~1e-6)."""


def relative_rmse(actual: Any, expected: Any) -> float:
    """||actual - expected|| / ||expected|| over the float tensors (fp64 arithmetic)."""
    from .replay.common import flat

    num = den = 0.0
    for a, e in zip(flat(actual), flat(expected)):
        if a.shape != e.shape:
            return float("inf")
        d = a.detach().double() - e.detach().double()
        num += float((d * d).sum())
        den += float((e.detach().double() ** 2).sum())
    return (num / den) ** 0.5 if den > 0 else (0.0 if num == 0 else float("inf"))


def _write_json(path: Path, data: Any) -> None:
    from ._io import write_atomic

    write_atomic(path, json.dumps(data))


if __name__ == "__main__":
    raise SystemExit(worker_main(sys.argv[1]))
