"""``pcg-inspect models`` and ``pcg-inspect ops``."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..errors import EXIT_OK
from ._utils import Debug, guarded


def models_command(debug: Debug = False) -> None:
    """List the bundled model configs (use the name as TARGET; shrink with --override for a CPU)."""

    def body() -> int:
        from rich.table import Table
        from rich.text import Text

        from ..models import bundled
        from ._utils import make_console

        table = Table(box=None, header_style="bold")
        for col in ("name", "model_type", "layers", "hidden", "heads/kv", "experts", "source"):
            table.add_column(col)
        for name, cfg in bundled().items():
            experts = cfg.get("num_experts") or cfg.get("n_routed_experts") or cfg.get("num_local_experts") or "-"
            cells = (name, cfg["model_type"], cfg.get("num_hidden_layers"), cfg.get("hidden_size"),
                     f"{cfg.get('num_attention_heads')}/{cfg.get('num_key_value_heads')}", experts, cfg.get("_source", ""))
            table.add_row(*(Text(str(c)) for c in cells))
        make_console().print(table)
        return EXIT_OK

    raise typer.Exit(guarded(debug, body))


def ops_command(
    namespace: Annotated[Optional[list[str]], typer.Option("--namespace", "-n", metavar="NS[,NS...]",
                                                           help="Op namespace(s) to list, comma-separated or repeated "
                                                                "(default: sglang, pcg_inspect).")] = None,
    target: Annotated[Optional[str], typer.Option("--target", metavar="TARGET",
                                                  help="Trace this target first (in a child process, no replay): its ops are "
                                                       "registered, and every namespace it calls ops from is audited too.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the audit as JSON.")] = False,
    debug: Debug = False,
) -> None:
    """Audit registered custom ops: schema, fake/meta kernel, declared mutations, split op or not."""

    def body() -> int:
        from rich.table import Table
        from rich.text import Text

        from ..errors import UsageError
        from ..opsaudit import OpRow, audit
        from ._utils import make_console

        names = tuple(n.strip() for item in (namespace or ("sglang", "pcg_inspect")) for n in item.split(",") if n.strip())
        if target:  # the target's code runs in a child, as for trace
            from .. import run as runner
            from ..options import TraceOptions

            found = runner.audit_ops(TraceOptions(target=target, sizes=(8,), replay=False), names)
            rows = [OpRow(**{**r, "mutates": tuple(r["mutates"])}) for r in found]
        else:
            rows = audit(names)
        console = make_console()
        if not rows:
            raise UsageError(f"no registered ops in namespace(s) {', '.join(names)} (is the package that registers them importable?)")
        missing = sum(1 for r in rows if not r.has_fake)
        if as_json:
            import dataclasses
            import json

            typer.echo(json.dumps([dataclasses.asdict(r) for r in rows], indent=1))
            return 1 if missing else EXIT_OK
        table = Table(box=None, header_style="bold")
        table.add_column("op", no_wrap=True)
        for col in ("fake/meta", "mutates", "split op", "schema"):
            table.add_column(col, overflow="fold")
        for r in rows:
            table.add_row(Text(r.name), Text("yes") if r.has_fake else Text("NO", style="bold red"),
                          Text(", ".join(r.mutates) or "-"), "yes" if r.is_split else "-", Text(r.schema))
        console.print(table)
        console.print(f"{len(rows)} op(s), {missing} without a fake/meta kernel")
        return 1 if missing else EXIT_OK

    raise typer.Exit(guarded(debug, body))
