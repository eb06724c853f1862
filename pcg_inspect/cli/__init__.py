"""Command-line entry point. Wiring only: parse, call the library, render. No torch at import."""

from __future__ import annotations

from typing import Optional

import typer
from typer.core import TyperArgument, TyperCommand

from .diff_cmd import diff_command
from .explain_cmd import explain_command
from .fix_cmd import fix_command
from .models_cmd import models_command, ops_command
from .plan_cmd import plan_command
from .render_cmd import render_command
from .trace_cmd import trace_command

app = typer.Typer(
    name="pcg-inspect",
    help="Debug piecewise CUDA graph (PCG) capture: graph breaks, guards, split points, replay.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)
class _Argument(TyperArgument):
    """An argument shown as its metavar (TARGET), not typer's '{target}' and '<str>'."""

    def _usage_display_name(self) -> str:
        name = self.metavar or (self.name or "").upper()
        return name if self.required else f"[{name}]"

    def _rich_display_name(self) -> str:
        return self.metavar or (self.name or "").upper()

    def display_type(self, ctx: object) -> None:  # type: ignore[override]
        return None

    def display_type_rich(self, ctx: object) -> None:  # type: ignore[override]
        return None


class _Command(TyperCommand):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        for param in self.params:
            if type(param) is TyperArgument:
                param.__class__ = _Argument


for _name, _fn in (("trace", trace_command), ("diff", diff_command), ("fix", fix_command), ("render", render_command),
                   ("explain", explain_command), ("models", models_command), ("ops", ops_command),
                   ("plan", plan_command)):
    app.command(_name, cls=_Command)(_fn)


def _explain(value: Optional[str]) -> None:
    if value:
        explain_command(value)


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
    """Run the app (the console script is ``pcg_inspect.__main__:main``, which also turns Ctrl-C into exit 130)."""
    app()
