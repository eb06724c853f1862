"""Shared CLI plumbing: option aliases, the consoles, the one way errors are printed.

User text (paths, exception messages, shapes like ``[s59, 16]``, extras like ``[models]``) is
never parsed as Rich markup: it goes through ``Text``. Off a terminal (CI logs, pipes) lines are
never wrapped, so a ``fix:`` can be pasted as printed.
"""

from __future__ import annotations

import inspect
import sys
import traceback
from typing import Annotated, Any, Callable, Optional, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from ..errors import EXIT_INTERNAL, EXIT_INTERRUPTED, Interrupted, PcgInspectError, one_line
from ..options import DEFAULT_TIMEOUT_S

T = TypeVar("T")

Debug = Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the verdict line.")]
JsonOut = Annotated[Optional[str], typer.Option("--json", metavar="PATH", help="Write the JSON report to PATH ('-' = stdout).")]


def _opt(name: str, kind: Any, default: Any, *decls: str, **info: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default,
                             annotation=Annotated[kind, typer.Option(*decls, **info)])


TRACE_OPTIONS = (
    _opt("tokens", str, "1,8,64", "--tokens", "-t", metavar="N,N,...", help="Capture sizes (token counts), comma-separated."),
    _opt("split_op", Optional[list[str]], None, "--split-op", metavar="NS::OP",
         help="Op that starts its own eager piece (ns::op, ns.op, ns.op.default). Repeatable."),
    _opt("no_sglang_split_ops", bool, False, "--no-sglang-split-ops",
         help="Do not add sglang's registered split ops even if sglang imports."),
    _opt("device", str, "cpu", "--device", metavar="cpu|cuda", help="cpu, cuda or cuda:N."),
    _opt("dtype", Optional[str], None, "--dtype", metavar="DTYPE",
         help="float32, bfloat16 or float16 (default: as the factory builds)."),
    _opt("dynamic", str, "maybe", "--dynamic", metavar="MODE",
         help="How token dims are marked: maybe (sglang's maybe_mark_dynamic), unbacked, static."),
    _opt("no_replay", bool, False, "--no-replay", help="Skip replaying the pieces against eager."),
    _opt("isolate", bool, False, "--isolate", help="GPU replay: capture each piece alone in its own memory pool."),
    _opt("layers", str, "0", "--layers", metavar="IDS", help="Model targets: decoder layers to build, e.g. 0, 0-3, 1,5."),
    _opt("num_layers", int, 0, "--num-layers", metavar="K",
         help="Model targets: build the whole model with K layers (embeddings + final norm)."),
    _opt("attn", str, "split", "--attn", metavar="MODE",
         help="Model targets: split (pcg_inspect::attention split op), sdpa or eager."),
    _opt("override", Optional[list[str]], None, "--override", metavar="KEY=VALUE",
         help="Model targets: config key=value (JSON value), repeatable."),
    _opt("nproc", int, 1, "--nproc", metavar="N",
         help="Trace N tensor-parallel ranks over torch.distributed (gloo on CPU, NCCL on GPUs)."),
    _opt("timeout", float, DEFAULT_TIMEOUT_S, "--timeout", metavar="SECONDS",
         help="Give up after this long (whole run, children and ranks; 0 = no limit). Exit 4."),
)
"""The options ``trace``, ``diff`` and ``fix`` share, declared once; ``with_trace_options`` adds them."""

F = TypeVar("F", bound=Callable[..., Any])


def with_trace_options(after: str) -> Callable[[F], F]:
    """Give a command the shared trace options, listed after its parameter ``after``.

    The command declares ``**shared`` and receives them there (for ``trace_options``); typer reads
    the combined signature, so ``--help`` lists them in that place.
    """

    def add(command: F) -> F:
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.kind is not p.VAR_KEYWORD]
        at = [p.name for p in own].index(after) + 1
        params = [*own[:at], *TRACE_OPTIONS, *own[at:]]
        command.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return add


def trace_options(target: str, shared: dict[str, Any]) -> object:
    """The ``TraceOptions`` from the shared trace options (a command's ``**shared``), validated."""
    from ..options import ModelOptions, TraceOptions, parse_capture_sizes

    p = shared
    return TraceOptions(
        target=target, capture_sizes=parse_capture_sizes(p["tokens"]), split_ops=tuple(p["split_op"] or ()),
        device=p["device"], dtype=p["dtype"], dynamic=p["dynamic"], replay=not p["no_replay"], isolate=p["isolate"],
        use_sglang_split_ops=not p["no_sglang_split_ops"],
        model=ModelOptions(p["layers"], p["num_layers"], p["attn"], tuple(p["override"] or ())), nproc=p["nproc"],
        timeout_s=p["timeout"], command=argv_command(),
    ).validate()


def make_console(stderr: bool = False) -> Console:
    """A console for people: colours on a terminal; off one, plain text that is never wrapped."""
    probe = Console(stderr=stderr)
    if probe.is_terminal:
        return Console(stderr=stderr, highlight=False)
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=max(probe.width, 160), color_system=None)


def consoles(json_to_stdout: bool) -> tuple[Console, Console]:
    """(view console, error console). With JSON on stdout the view goes to stderr: the two never mix."""
    err = make_console(stderr=True)
    return (err if json_to_stdout else make_console()), err


def error_line(label: str, message: str) -> Text:
    """'error: <message>' with the message as plain text (never markup)."""
    return Text.assemble((f"{label}:", "bold red"), " ", message)


def guarded(debug: bool, fn: Callable[[], T]) -> T:
    """Run a command body: our errors become one line and their exit code, never a traceback.

    Anything else is a bug in pcg-inspect: one line, exit 3. ``--debug`` prints the traceback
    (the user's frames included) and keeps the exit code.
    """
    err = make_console(stderr=True)
    try:
        return fn()
    except (typer.Exit, Interrupted):
        raise
    except PcgInspectError as exc:
        if debug:
            traceback.print_exception(exc, file=sys.stderr)
        err.print(error_line("error", str(exc)))
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:
        if debug:
            traceback.print_exception(exc, file=sys.stderr)
            if getattr(exc, "child_traceback", ""):
                sys.stderr.write(f"in the worker process:\n{exc.child_traceback}")
        err.print(error_line("internal error", f"{one_line(exc)} (a bug in pcg-inspect; rerun with --debug for the traceback)"))
        raise typer.Exit(EXIT_INTERNAL) from None


def argv_command() -> str:
    return " ".join(["pcg-inspect", *sys.argv[1:]])


def target_echo(target: str, console: Console, quiet: bool) -> Callable[[str], None]:
    """How a line the target printed is shown: under the target's name, as plain text (never ours, never markup)."""
    if quiet:
        return lambda line: None
    where = target.rpartition(":")[0] if ":" in target else target
    name = where.replace("\\", "/").rsplit("/", 1)[-1] or target

    def echo(line: str) -> None:
        console.print(Text.assemble((f"{name}| ", "dim"), line), soft_wrap=True)

    return echo


def stop_message(report: object) -> Optional[Text]:
    """The error line of a run that stopped early, or None: 'timed out after N s in the <stage> stage at file:line'
    (exit 4) with the target's stack, or 'the target ended the run with sys.exit(3) in the load stage at file:line'
    (exit 2). When no code of the target was running there is no stack to show: the finding's hint says why."""
    findings = getattr(report, "findings", ())
    found = next((f for f in findings if f.kind == "timeout"), None)
    if found is None:
        exited = next((f for f in findings if f.kind == "target_exit"), None)
        return None if exited is None else error_line("error", f"{exited.message} (exit 2)")
    d = found.details
    at = f" at {found.file}:{found.line}" if found.file else ""
    text = error_line("error", f"timed out after {d.timeout_s:g} s in the {d.stage} stage{at} (--timeout; exit 4)")
    for frame in d.stack if found.file else ():  # the target's frames; pcg-inspect's own are in the JSON only
        text.append(f"\n    {frame}")
    return text
