"""Tensor parallel: trace (and replay) every rank over torch.distributed, merge, and catch ranks that disagree.

``pcg-inspect trace TARGET --nproc N`` spawns N ranks (gloo on CPU, NCCL on GPUs, one GPU per rank),
calls the factory in each after the process group is up (with ``rank`` / ``world_size`` when it
takes them), runs the whole pipeline per rank, and merges: the top-level report is rank 0's, every
rank's report sits in ``ranks[]``, and a ``rank_divergence`` error names the rank and the item when
ranks differ in graphs, breaks, recompiles, split points or piece shapes. Each rank's eager output
is also compared with a single-rank reference (the factory at ``world_size=1``).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tempfile
import time
from datetime import timedelta
from typing import Any, Callable, Optional, Sequence

from .errors import UsageError, one_line
from .report import Finding, Report

NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
COLLECTIVE_TIMEOUT_S = 60
RANK_TIMEOUT_S = 600


def run_ranks(options: Any, progress: Optional[Callable[[str], None]] = None) -> Report:
    """Run the pipeline on ``options.nproc`` ranks and merge their reports.

    Raises:
        UsageError: bad --nproc, or more ranks than GPUs with --device cuda.
    """
    import torch
    import torch.multiprocessing as mp

    n = options.nproc
    if n < 2:
        raise UsageError("--nproc needs at least 2 ranks")
    if options.device.startswith("cuda") and torch.cuda.device_count() < n:
        raise UsageError(f"--nproc {n} with --device cuda needs {n} GPUs; this machine has {torch.cuda.device_count()}")
    os.environ.update(NO_MULTICAST)  # children inherit it (spawn copies the environment)
    say = progress or (lambda _m: None)
    port = _free_port()
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="pcg-tp-") as tmp:
        opts = dataclasses.asdict(options)
        procs = []
        for rank in range(n):
            p = ctx.Process(target=_rank_main, args=(rank, n, port, opts, tmp), daemon=False)
            p.start()
            procs.append(p)
        say(f"tracing {n} ranks")
        deadline = time.monotonic() + RANK_TIMEOUT_S
        for p in procs:
            p.join(max(1.0, deadline - time.monotonic()))
        hung = [r for r, p in enumerate(procs) if p.is_alive()]
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(5)
        reports: dict[int, Report] = {}
        errors: dict[int, str] = {}
        for rank in range(n):
            path = os.path.join(tmp, f"rank{rank}.json")
            if os.path.exists(path):
                with open(path, encoding="utf-8") as fh:
                    reports[rank] = Report.from_json(fh.read())
            err = os.path.join(tmp, f"rank{rank}.err")
            if os.path.exists(err):
                with open(err, encoding="utf-8") as fh:
                    errors[rank] = fh.read().strip()
        outputs = {r: _load(os.path.join(tmp, f"rank{r}.pt")) for r in range(n)}
        say("single-rank reference")
        reference = _reference(options)
    return merge(reports, errors, hung, outputs, reference, n)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _load(path: str) -> Any:
    import torch

    return torch.load(path) if os.path.exists(path) else None


def _rank_main(rank: int, world_size: int, port: int, opts: dict, tmp: str) -> None:
    import torch
    import torch.distributed as dist

    os.environ.update(NO_MULTICAST)
    cuda = opts["device"].startswith("cuda")
    if cuda:
        torch.cuda.set_device(rank)
    try:
        dist.init_process_group(
            "nccl" if cuda else "gloo",
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=world_size,
            timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S),
        )
        from .pipeline import TraceOptions, run_trace

        opts = dict(opts)
        opts.update(nproc=1, rank=rank, world_size=world_size, replay_subprocess=False)
        if cuda:
            opts["device"] = f"cuda:{rank}"
        for key in ("capture_sizes", "split_ops", "overrides"):
            opts[key] = tuple(opts[key])
        run = run_trace(TraceOptions(**opts))
        with open(os.path.join(tmp, f"rank{rank}.json"), "w", encoding="utf-8") as fh:
            fh.write(run.report.to_json(indent=None))
        call = max(run.target.calls, key=lambda c: c.tokens or 0)
        with torch.no_grad():
            out = run.target.module(*call.args, **call.kwargs)
        torch.save(out.detach().cpu() if isinstance(out, torch.Tensor) else out, os.path.join(tmp, f"rank{rank}.pt"))
    except BaseException as exc:  # the parent reports it per rank
        with open(os.path.join(tmp, f"rank{rank}.err"), "w", encoding="utf-8") as fh:
            fh.write(one_line(exc))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _reference(options: Any) -> Any:
    # The same factory at world_size=1 in this process (no process group: collectives are no-ops).
    import torch

    from .load import load

    try:
        target = load(options.target, options.capture_sizes, "cpu", options.dtype, rank=0, world_size=1)
    except Exception:
        return None
    call = max(target.calls, key=lambda c: c.tokens or 0)
    with torch.no_grad():
        return target.module(*call.args, **call.kwargs)


def _signature(r: Report) -> dict[str, Any]:
    main = r.graphs[0].index if r.graphs else -1
    return {
        "graphs": len(r.graphs),
        "graph breaks": sorted((b.category, os.path.basename(b.file), b.line) for b in r.graph_breaks),
        "recompiles": len(r.recompiles),
        "split points": [(p.index, p.ops[0]) for p in r.pieces if p.graph == main and p.is_split],
        "pieces": [(p.index, p.is_split, p.ops, p.input_shapes, p.output_shapes) for p in r.pieces if p.graph == main],
        "guards": sum(len(gs.guards) for gs in r.guards),
    }


def divergences(reports: dict[int, Report]) -> list[Finding]:
    """rank_divergence findings: every item where a rank differs from rank 0."""
    if 0 not in reports:
        return []
    base = _signature(reports[0])
    out = []
    for rank in sorted(reports):
        if rank == 0:
            continue
        sig = _signature(reports[rank])
        for item, value in sig.items():
            if value == base[item]:
                continue
            detail = _describe(item, base[item], value)
            file, line, function, code = _where(reports[rank], item)
            out.append(
                Finding(
                    kind="rank_divergence",
                    severity="error",
                    message=f"rank {rank} differs from rank 0 in {item}: {detail}. Under TP each rank captures its own "
                    "graph; a different graph means a hang in a collective or wrong output",
                    file=file, line=line, function=function, code=code,
                    hint="Make every rank trace the same code: no branch on the rank or on rank-local state in forward.",
                    details={"rank": rank, "item": item, "rank0": repr(base[item])[:400], f"rank{rank}": repr(value)[:400]},
                )
            )
    return out


def _describe(item: str, a: Any, b: Any) -> str:
    if item == "pieces" and isinstance(a, list) and isinstance(b, list):
        for pa, pb in zip(a, b):
            if pa != pb:
                extra = [op for op in pb[2] if op not in pa[2]]
                missing = [op for op in pa[2] if op not in pb[2]]
                return f"piece {pa[0]}: ops {', '.join(missing) or '-'} on rank 0 vs {', '.join(extra) or '-'} here"
        return f"{len(a)} vs {len(b)} pieces"
    return f"{a!r} vs {b!r}"[:300]


def _where(r: Report, item: str) -> tuple[str, int, str, str]:
    if item == "graph breaks" and r.graph_breaks:
        b = r.graph_breaks[0]
        return b.file, b.line, b.function, b.code
    if r.graphs:
        g = r.graphs[0]
        return g.file, g.line, g.function, ""
    return "", 0, "", ""


def merge(
    reports: dict[int, Report],
    errors: dict[int, str],
    hung: Sequence[int],
    outputs: dict[int, Any],
    reference: Any,
    world_size: int,
) -> Report:
    """One report: rank 0's at the top, every rank in ``ranks``, divergence and TP-result findings added."""
    from .pipeline import with_summary
    from .replay import compare

    if 0 not in reports:
        why = errors.get(0) or ("did not finish (hung?)" if 0 in hung else "no report")
        raise UsageError(f"rank 0 failed: {why}")
    findings = list(reports[0].findings) + divergences(reports)
    for rank in range(world_size):
        if rank in hung:
            findings.append(Finding(kind="rank_divergence", severity="error",
                                    message=f"rank {rank} did not finish in {RANK_TIMEOUT_S} s: hung in a collective the other ranks never reached?",
                                    details={"rank": rank, "item": "hang"}))
        elif rank in errors:
            findings.append(Finding(kind="rank_divergence", severity="error", message=f"rank {rank} failed: {errors[rank]}",
                                    details={"rank": rank, "item": "error"}))
    if reference is not None:
        for rank, out in sorted(outputs.items()):
            if out is None:
                continue
            abs_e, rel_e, close = compare(out, reference)
            if not close:
                findings.append(Finding(
                    kind="tp_mismatch", severity="error",
                    message=f"rank {rank}'s output differs from the single-rank reference (max abs err {abs_e:.3g}): "
                    "the shards or the collectives do not add up to the full layer",
                    details={"rank": rank, "max_abs_err": abs_e, "max_rel_err": rel_e},
                ))
    top = reports[0]
    env = dataclasses.replace(top.environment, world_size=world_size)
    ranks = tuple(dataclasses.replace(reports[r], graphs=tuple(dataclasses.replace(g, nodes=()) for g in reports[r].graphs))
                  for r in sorted(reports))
    return with_summary(top, environment=env, findings=tuple(findings), ranks=ranks)


def rank_table(report: Report) -> list[tuple[int, str, int, int, int, str]]:
    """(rank, verdict, graphs, breaks, pieces, replay) per rank, for views."""
    return [
        (r.environment.rank, "capturable" if r.summary.capturable else "not capturable", r.summary.num_graphs,
         r.summary.num_graph_breaks, r.summary.num_pieces, r.summary.replay_status or "-")
        for r in report.ranks
    ]
