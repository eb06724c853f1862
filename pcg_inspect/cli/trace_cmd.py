"""``pcg-inspect trace``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import EXIT_OK, EXIT_PROBLEMS, UsageError
from ._utils import Debug, Device, JsonOut, NoReplay, Quiet, SplitOps, Tokens, argv_command, consoles, guarded


def trace(
    target: Annotated[
        str,
        typer.Argument(help="path/to/file.py:factory, package.module:factory, or a model: bundled name (pcg-inspect models), folder with config.json, org/name"),
    ],
    tokens: Tokens = "1,8,64",
    split_op: SplitOps = None,
    no_sglang_split_ops: Annotated[
        bool, typer.Option("--no-sglang-split-ops", help="Do not add sglang's registered split ops even if sglang imports.")
    ] = False,
    device: Device = "cpu",
    dtype: Annotated[Optional[str], typer.Option("--dtype", help="float32, bfloat16 or float16 (default: as the factory builds).")] = None,
    dynamic: Annotated[
        str, typer.Option("--dynamic", help="How token dims are marked: maybe (sglang's maybe_mark_dynamic), unbacked, static.")
    ] = "maybe",
    no_replay: NoReplay = False,
    isolate: Annotated[
        bool, typer.Option("--isolate", help="GPU replay: capture each piece alone in its own memory pool (bisect shared-pool failures).")
    ] = False,
    layers: Annotated[str, typer.Option("--layers", help="Model targets: decoder layers to build, e.g. 0, 0-3, 1,5.")] = "0",
    num_layers: Annotated[
        int, typer.Option("--num-layers", help="Model targets: build the whole model with K layers (embeddings + final norm).")
    ] = 0,
    attn: Annotated[str, typer.Option("--attn", help="Model targets: split (pcg_inspect::attention split op), sdpa or eager.")] = "split",
    override: Annotated[
        Optional[list[str]], typer.Option("--override", help="Model targets: config key=value (JSON value), repeatable, e.g. num_hidden_layers=1.")
    ] = None,
    nproc: Annotated[
        int, typer.Option("--nproc", help="Trace N tensor-parallel ranks over torch.distributed (gloo on CPU, NCCL on GPUs) and merge.")
    ] = 1,
    json_out: JsonOut = None,
    out: Annotated[
        Optional[Path], typer.Option("--out", help="Folder for all artifacts: report.json, graph.dot, graph.svg, report.html.", metavar="DIR")
    ] = None,
    html: Annotated[Optional[Path], typer.Option("--html", help="Write the self-contained HTML report to PATH.", metavar="PATH")] = None,
    detail: Annotated[str, typer.Option("--detail", help="Picture detail: nodes, pieces or auto (pieces above 400 nodes).")] = "auto",
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Trace TARGET like piecewise CUDA graph capture and report every graph break, guard, recompile and piece.

    Exit codes: 0 capturable, 1 problems found, 2 usage or load error, 3 internal error.
    """

    def body() -> int:
        from ..load import parse_capture_sizes
        from ..pipeline import TraceOptions, run_trace

        sizes = parse_capture_sizes(tokens)
        if detail not in ("nodes", "pieces", "auto"):
            raise UsageError(f"--detail must be nodes, pieces or auto, got {detail!r}")
        if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
            raise UsageError(f"--device must be cpu or cuda, got {device!r}")
        view, err = consoles(json_out == "-")
        opts = TraceOptions(
            target=target,
            capture_sizes=sizes,
            split_ops=tuple(split_op or ()),
            device=device,
            dtype=dtype,
            dynamic=dynamic,
            use_sglang_split_ops=not no_sglang_split_ops,
            replay=not no_replay,
            isolate=isolate,
            layers=layers,
            num_layers=num_layers,
            attn=attn,
            overrides=tuple(override or ()),
            nproc=nproc,
            command=argv_command(),
        )
        if quiet or not err.is_terminal:
            run = run_trace(opts)
        else:
            with err.status("tracing…") as status:
                run = run_trace(opts, progress=lambda msg: status.update(msg))
        report = run.report
        note = _write_outputs(report, json_out, out, html, detail)
        from ..render.console import render, verdict

        view.print(verdict(report) if quiet else render(report))
        if note:
            err.print(f"note: {note}")
        return EXIT_OK if report.summary.capturable else EXIT_PROBLEMS

    raise typer.Exit(guarded(debug, body))


def _write_outputs(report, json_out: Optional[str], out: Optional[Path], html: Optional[Path], detail: str) -> str:
    import sys

    from .._io import write_atomic

    text = report.to_json()
    if json_out == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    elif json_out:
        write_atomic(json_out, text)
    if out is None and html is None:
        return ""
    from ..render.artifacts import save

    _, note = save(report, out, html, detail)
    return note
