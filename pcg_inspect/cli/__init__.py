"""Command-line entry point. Wiring only: parse, call the library, render. No torch at import."""

from __future__ import annotations

from typing import Optional

import typer

from .diff_cmd import diff
from .explain_cmd import explain
from .models_cmd import models, ops
from .render_cmd import render
from .trace_cmd import trace

app = typer.Typer(
    name="pcg-inspect",
    help="Debug piecewise CUDA graph (PCG) capture: graph breaks, guards, split points, replay.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)
app.command("trace")(trace)
app.command("diff")(diff)
app.command("render")(render)
app.command("explain")(explain)
app.command("models")(models)
app.command("ops")(ops)


def _explain(value: Optional[str]) -> None:
    if value:
        explain(value)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"pcg-inspect {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    explain_kind: Optional[str] = typer.Option(
        None, "--explain", metavar="KIND", callback=_explain, is_eager=True, help="Explain a finding kind and exit."
    ),
) -> None:
    """Debug piecewise CUDA graph (PCG) capture: graph breaks, guards, split points, replay."""


def main() -> None:
    """Console-script entry point."""
    app()
