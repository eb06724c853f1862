"""Shared CLI plumbing: option aliases, the consoles, the one way errors are printed.

User text (paths, exception messages, shapes like ``[s59, 16]``, extras like ``[models]``) is
never parsed as Rich markup: it goes through ``Text``. Off a terminal (CI logs, pipes) lines are
never wrapped, so a ``fix:`` can be pasted as printed.
"""

from __future__ import annotations

import sys
import traceback
from typing import Annotated, Any, Callable, Optional, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from ..errors import EXIT_INTERNAL, EXIT_INTERRUPTED, PcgInspectError, one_line

T = TypeVar("T")

Debug = Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the verdict line.")]
Tokens = Annotated[str, typer.Option("--tokens", "-t", metavar="N,N,...", help="Capture sizes (token counts), comma-separated.")]
SplitOps = Annotated[
    Optional[list[str]],
    typer.Option("--split-op", metavar="NS::OP", help="Op that starts its own eager piece (ns::op, ns.op, ns.op.default). Repeatable."),
]
Device = Annotated[str, typer.Option("--device", metavar="cpu|cuda", help="cpu, cuda or cuda:N.")]
NoReplay = Annotated[bool, typer.Option("--no-replay", help="Skip replaying the pieces against eager.")]
JsonOut = Annotated[Optional[str], typer.Option("--json", metavar="PATH", help="Write the JSON report to PATH ('-' = stdout).")]
Dtype = Annotated[Optional[str], typer.Option("--dtype", metavar="DTYPE", help="float32, bfloat16 or float16 (default: as the factory builds).")]
Dynamic = Annotated[str, typer.Option("--dynamic", metavar="MODE", help="How token dims are marked: maybe (sglang's maybe_mark_dynamic), unbacked, static.")]
Isolate = Annotated[bool, typer.Option("--isolate", help="GPU replay: capture each piece alone in its own memory pool.")]
NoSglang = Annotated[bool, typer.Option("--no-sglang-split-ops", help="Do not add sglang's registered split ops even if sglang imports.")]
Layers = Annotated[str, typer.Option("--layers", metavar="IDS", help="Model targets: decoder layers to build, e.g. 0, 0-3, 1,5.")]
NumLayers = Annotated[int, typer.Option("--num-layers", metavar="K", help="Model targets: build the whole model with K layers (embeddings + final norm).")]
Attn = Annotated[str, typer.Option("--attn", metavar="MODE", help="Model targets: split (pcg_inspect::attention split op), sdpa or eager.")]
Override = Annotated[Optional[list[str]], typer.Option("--override", metavar="KEY=VALUE", help="Model targets: config key=value (JSON value), repeatable.")]
Nproc = Annotated[int, typer.Option("--nproc", metavar="N", help="Trace N tensor-parallel ranks over torch.distributed (gloo on CPU, NCCL on GPUs).")]
Timeout = Annotated[float, typer.Option("--timeout", metavar="SECONDS", help="Give up after this long (whole run, children and ranks; 0 = no limit). Exit 4.")]


def trace_options(target: str, params: dict[str, Any]) -> object:
    """The ``TraceOptions`` from the shared trace options of ``trace``, ``diff`` and ``fix`` (validated).

    ``params``: the command's parameters (its ``locals()``), named as the shared option aliases name them.
    """
    from ..options import ModelOptions, TraceOptions, parse_capture_sizes

    p = params
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
    except typer.Exit:
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
        err.print(error_line("internal error", f"{one_line(exc)} (a bug in pcg-inspect; rerun with --debug for the traceback)"))
        raise typer.Exit(EXIT_INTERNAL) from None


def argv_command() -> str:
    return " ".join(["pcg-inspect", *sys.argv[1:]])


def timeout_message(report: object) -> Optional[Text]:
    """'error: timed out after N s in the <stage> stage at file:line' and the target's stack, or None."""
    found = next((f for f in getattr(report, "findings", ()) if f.kind == "timeout"), None)
    if found is None:
        return None
    d = found.details
    at = f" at {found.file}:{found.line}" if found.file else ""
    text = error_line("error", f"timed out after {d.timeout_s:g} s in the {d.stage} stage{at} (--timeout; exit 4)")
    for frame in d.stack:
        text.append(f"\n    {frame}")
    return text
