"""``pcg-inspect explain KIND``."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..errors import EXIT_OK, UsageError
from ._utils import Debug, guarded


def explain_command(
    kind: Annotated[Optional[str], typer.Argument(help="A finding kind or graph-break category; omit to list them.")] = None,
    debug: Debug = False,
) -> None:
    """Explain a finding kind or graph-break category: what it means for PCG, an example, the fix."""

    def body() -> int:
        from rich.markdown import Markdown
        from rich.text import Text

        from .. import kinds as registry
        from ..catalog import entry_markdown
        from ._utils import make_console

        console = make_console()
        if kind is None:
            for k in registry.all_kinds():
                console.print(Text.assemble((f"{k.name:<22}", "bold"), " ", k.title))
            return EXIT_OK
        if not registry.known(kind):
            raise UsageError(f"unknown kind {kind!r}; known: {', '.join(k.name for k in registry.all_kinds())}")
        if console.is_terminal:
            console.print(Markdown(entry_markdown(kind)))
        else:  # a pipe or a log: the Markdown itself, code to paste exactly as written, no padding
            console.file.write(entry_markdown(kind) + "\n")
        return EXIT_OK

    raise typer.Exit(guarded(debug, body))
