"""``pcg-inspect plan``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.text import Text

from ._utils import Debug, JsonOut, Quiet, consoles, guarded, plan_options, target_echo, trace_options, with_trace_options


@with_trace_options(after="target", plan=True)
def plan_command(
    target: Annotated[str, typer.Argument(metavar="TARGET", help="A model (bundled name, folder, org/name) or file.py:factory")],
    json_out: JsonOut = None,
    html: Annotated[Optional[Path], typer.Option("--html", metavar="PATH", help="Write the HTML report, plan included.")] = None,
    quiet: Quiet = False,
    debug: Debug = False,
    **shared: Any,
) -> None:
    """The engine's whole capture schedule (sglang's prefill or decode sizes, --phase) for the whole model, forecast
    from a few layers at a few sizes: compile time, the CUDA graphs captured and how many identical pieces could
    share, the weights; with --device cuda also the capture pass as the engine runs it (warm-up, capture time and the
    shared graph pool per size, peak memory; the smallest and largest size replayed against eager) and whether the
    pool fits next to the weights at --mem-fraction-static. The sizes are sglang's schedule of --phase up to --max-bs
    unless --tokens names others (its default, 1,8,64, stands for the schedule here).

    Exit codes: 0 done, 2 usage or load error, 3 internal error, 4 timeout.
    """

    def body() -> int:
        from .._io import check_writable
        from ..errors import EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE
        from ..plan import make_plan
        from ..report import exit_code
        from ..render.console import plan_view

        planned = plan_options(shared)
        opts = trace_options(target, shared)
        if json_out and json_out != "-":
            check_writable(json_out, "--json")
        if html is not None:
            check_writable(html, "--html")
        view, err = consoles(json_out == "-")
        echo = target_echo(opts.target, err, quiet)
        if quiet or not err.is_terminal:
            report = make_plan(opts, planned, echo=echo)
        else:
            with err.status("planning…") as status:
                report = make_plan(opts, planned, progress=lambda msg: status.update(Text(msg)), echo=echo)
        _write(report, json_out, html)
        view.print(plan_view(report))
        code = exit_code(report)  # a sample that timed out or ended the process; problems are trace's business
        return code if code in (EXIT_USAGE, EXIT_TIMEOUT) else EXIT_OK

    raise typer.Exit(guarded(debug, body))


def _write(report: Any, json_out: Optional[str], html: Optional[Path]) -> None:
    import sys

    from .._io import write_atomic

    if json_out == "-":
        sys.stdout.write(report.to_json())
        sys.stdout.flush()
    elif json_out:
        write_atomic(json_out, report.to_json())
    if html is not None:
        from ..render.artifacts import save

        save(report, None, html, "auto")
