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

T = TypeVar("T")

Debug = Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the verdict line.")]
Detail = Annotated[str, typer.Option("--detail", metavar="MODE",
                                     help="Picture detail: nodes, pieces or auto (pieces above 400 nodes).")]
DETAIL_MODES = ("nodes", "pieces", "auto")


def check_detail(detail: str) -> str:
    """--detail, checked in one place for every command that draws."""
    from ..errors import UsageError

    if detail not in DETAIL_MODES:
        raise UsageError(f"--detail must be nodes, pieces or auto, got {detail!r}")
    return detail


JsonOut = Annotated[Optional[str], typer.Option("--json", metavar="PATH", help="Write the JSON report to PATH ('-' = stdout).")]


def _cli_parameter(name: str, meta: Any, default: Any) -> inspect.Parameter:
    """One typer option from a TraceOptions field's Flag: the field's name, its flag, help, metavar and default."""
    if meta.negate:
        kind, value = bool, False  # --no-replay: given -> the field is False
    elif meta.repeat:
        kind, value = Optional[list[str]], None
    elif meta.show is not None:
        kind, value = str, meta.show(default)
    else:
        kind, value = (Optional[type(default)] if default is None else type(default)), default
        kind = Optional[str] if default is None else kind
    info: dict[str, Any] = {"help": meta.help}
    if meta.metavar:
        info["metavar"] = meta.metavar
    return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=value,
                             annotation=Annotated[kind, typer.Option(*meta.decls, **info)])


def _trace_parameters() -> tuple[inspect.Parameter, ...]:
    from ..options import declared, defaults

    values = defaults()
    return tuple(_cli_parameter(name, meta, values[name]) for name, meta in declared())


TRACE_OPTIONS = _trace_parameters()
"""The options ``trace``, ``diff`` and ``fix`` share, derived from ``TraceOptions``; ``with_trace_options`` adds them."""


def _plan_parameters() -> tuple[inspect.Parameter, ...]:
    from ..options import plan_declared

    return tuple(_cli_parameter(name, meta, default) for name, meta, default in plan_declared())


PLAN_OPTIONS = _plan_parameters()
"""``plan``'s own options, derived from ``PlanOptions`` (``with_trace_options(plan=True)`` adds them)."""

F = TypeVar("F", bound=Callable[..., Any])


def with_trace_options(after: str, models: bool = True, plan: bool = False) -> Callable[[F], F]:
    """Give a command the shared trace options, listed after its parameter ``after``.

    The command declares ``**shared`` and receives them there (for ``trace_options``); typer reads
    the combined signature, so ``--help`` lists them in that place. ``models=False``: a command that refuses
    model targets (``fix``) does not offer the model options. ``plan=True``: ``plan``'s own options come first
    (``plan_options`` takes them out of ``shared``).
    """
    from ..options import ModelOptions

    model_fields = {f for f in ModelOptions.__dataclass_fields__}
    offered = (PLAN_OPTIONS if plan else ()) + tuple(p for p in TRACE_OPTIONS if models or p.name not in model_fields)

    def add(command: F) -> F:
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.kind is not p.VAR_KEYWORD]
        at = [p.name for p in own].index(after) + 1
        params = [*own[:at], *offered, *own[at:]]
        command.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return add


def trace_options(target: str, shared: dict[str, Any]) -> Any:
    """The validated ``TraceOptions`` from the shared trace options (a command's ``**shared``)."""
    from ..options import TraceOptions

    return TraceOptions.from_flags(target, shared, command=argv_command()).validate()


def plan_options(shared: dict[str, Any]) -> Any:
    """The validated ``PlanOptions``, taken out of a ``plan`` command's ``**shared``."""
    from ..options import PlanOptions, plan_declared

    return PlanOptions.from_values({name: shared.pop(name) for name, _, _ in plan_declared() if name in shared})


def make_console(stderr: bool = False) -> Console:
    """A console for people: colours on a terminal; off one, plain text that is never wrapped and has no
    trailing padding (tables pad their cells; a log or a pipe gets each line as it reads)."""
    probe = Console(stderr=stderr)
    if probe.is_terminal:
        return Console(stderr=stderr, highlight=False)
    return Console(file=_Unpadded(sys.stderr if stderr else sys.stdout), highlight=False, soft_wrap=True,
                   width=max(probe.width, 160), color_system=None)


class _Unpadded:
    """A text stream that drops the spaces at the end of each line it passes on."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self.stream.write(line.rstrip(" ") + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    @property
    def encoding(self) -> str:
        return getattr(self.stream, "encoding", "utf-8") or "utf-8"


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
        err.print(error_line("error", _as_typed(exc)))
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


def _as_typed(exc: PcgInspectError) -> str:
    """The message as the user typed it: an option error names the flag (--tokens), not the field (sizes)."""
    from ..options import OptionError, flag_of

    return exc.spelled(flag_of(exc.field)) if isinstance(exc, OptionError) else str(exc)


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
    from ..details import TargetExitDetails, TimeoutDetails

    findings = getattr(report, "findings", ())
    found = next((f for f in findings if isinstance(f.details, TimeoutDetails)), None)
    if found is None:
        exited = next((f for f in findings if isinstance(f.details, TargetExitDetails)), None)
        return None if exited is None else error_line("error", f"{exited.message} (exit 2)")
    d = found.details
    at = f" at {found.file}:{found.line}" if found.file else ""
    text = error_line("error", f"timed out after {d.timeout_s:g} s in the {d.stage} stage{at} (--timeout; exit 4)")
    for frame in d.stack if found.file else ():  # the target's frames; pcg-inspect's own are in the JSON only
        text.append(f"\n    {frame}")
    return text
