"""Tensor parallel: what the ranks' reports say together (``run`` starts the ranks; ``reference_findings`` runs in the reference child).

The merged report is rank 0's, with every rank's own report in ``ranks[]``, a
``rank_divergence`` error per item where a rank differs from rank 0 (graphs, breaks, recompiles,
split points, piece shapes) or failed or hung, and the ``tp_mismatch`` findings the single-rank
reference produced.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .details import RankDetails, TpMismatchDetails
from .kinds import stops_run
from .errors import UsageError
from .report import Finding, Report, with_summary

if TYPE_CHECKING:
    from .options import TraceOptions

NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
"""NVLink multicast stays off in every rank: a program using it can take a shared host's GPUs down."""


def signature(r: Report) -> dict[str, Any]:
    """The items ranks must agree on, from one rank's report."""
    main = r.graphs[0].index if r.graphs else -1
    return {
        "graphs": len(r.graphs),
        "graph breaks": sorted((b.category, os.path.basename(b.file), b.line) for b in r.graph_breaks),
        "recompiles": len(r.recompiles),
        "split points": [(p.index, p.ops[0] if p.ops else "?") for p in r.pieces if p.graph == main and p.is_split],
        "replay": r.replay.status if r.replay is not None else "",
        "pieces": [(p.index, p.is_split, p.ops, p.input_shapes, p.output_shapes) for p in r.pieces if p.graph == main],
        "guards": sum(len(gs.guards) for gs in r.guards),
    }


def divergences(reports: dict[int, Report]) -> list[Finding]:
    """rank_divergence findings: every item where a rank differs from rank 0."""
    if 0 not in reports:
        return []
    base = signature(reports[0])
    out = []
    for rank in sorted(reports):
        if rank == 0:
            continue
        for item, value in signature(reports[rank]).items():
            if value == base[item]:
                continue
            file, line, function, code = _item_location(reports[rank], item)
            out.append(Finding(
                kind="rank_divergence", severity="error",
                message=f"rank {rank} differs from rank 0 in {item}: {_describe(item, base[item], value)}. Under TP each "
                "rank captures its own graph; a different graph means a hang in a collective or wrong output",
                file=file, line=line, function=function, code=code,
                hint="Make every rank trace the same code: no branch on the rank or on rank-local state in forward.",
                details=RankDetails(rank=rank, item=item, rank0=repr(base[item])[:400], other=repr(value)[:400]),
            ))
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


def _item_location(r: Report, item: str) -> tuple[str, int, str, str]:
    if item == "graph breaks" and r.graph_breaks:
        b = r.graph_breaks[0]
        return b.file, b.line, b.function, b.code
    if r.graphs:
        g = r.graphs[0]
        return g.file, g.line, g.function, ""
    return "", 0, "", ""


def failed_rank_findings(world_size: int, errors: dict[int, str], hung: Sequence[int], timeout_s: float) -> list[Finding]:
    """A rank_divergence error for each rank that failed or did not finish."""
    out = []
    for rank in range(world_size):
        if rank in hung:
            out.append(Finding(kind="rank_divergence", severity="error",
                               message=f"rank {rank} did not finish in {timeout_s:g} s: hung in a collective the other ranks never reached?",
                               details=RankDetails(rank=rank, item="hang")))
        elif rank in errors:
            out.append(Finding(kind="rank_divergence", severity="error", message=f"rank {rank} failed: {errors[rank]}",
                               details=RankDetails(rank=rank, item="error")))
    return out


def merge(reports: dict[int, Report], errors: dict[int, str], hung: Sequence[int], mismatches: Sequence[Finding],
          world_size: int, timeout_s: float) -> Report:
    """One report: rank 0's at the top, every rank in ``ranks``, divergence and TP-result findings added.

    Raises:
        UsageError: rank 0 produced no report (its error is the message).
    """
    if 0 not in reports:
        why = errors.get(0) or ("did not finish (hung?)" if 0 in hung else "no report")
        raise UsageError(f"rank 0 failed: {why}")
    findings = list(reports[0].findings) + divergences(reports) + failed_rank_findings(world_size, errors, hung, timeout_s)
    findings += [f for r in sorted(reports) if r != 0 for f in reports[r].findings if stops_run(f.kind)]
    findings += mismatches
    top = reports[0]
    env = dataclasses.replace(top.environment, world_size=world_size)
    ranks = tuple(dataclasses.replace(reports[r], graphs=tuple(dataclasses.replace(g, nodes=()) for g in reports[r].graphs))
                  for r in sorted(reports))
    return with_summary(top, environment=env, findings=tuple(findings), ranks=ranks)


def reference_findings(options: "TraceOptions", outputs: list[str]) -> list[dict[str, Any]]:
    """tp_mismatch findings (JSON-safe): each rank's output against the same target at world_size=1 (runs in a child)."""
    import torch

    from .load import load
    from .replay import compare
    from .report import to_jsonable

    device = "cuda:0" if options.device.startswith("cuda") else "cpu"  # a full-size layer is slow on a CPU
    target = load(options.target, options.sizes, device, options.torch_dtype_name, options.model, 0, 1)
    call = max(target.calls, key=lambda c: c.tokens or 0)
    with torch.no_grad():
        reference = target.module(*call.args, **call.kwargs)
    out = []
    for path in outputs:
        rank = int(Path(path).parent.name.removeprefix("rank"))
        got = torch.load(path, map_location=device)
        abs_e, rel_e, _ = compare(got, reference)
        rel = relative_rmse(got, reference)
        limit = TP_RELATIVE_RMSE.get(str(reference.dtype).replace("torch.", ""), 1e-4)
        if rel > limit:  # a sum over ranks rounds differently: elementwise tolerances flag bf16 noise
            out.append(to_jsonable(Finding(
                kind="tp_mismatch", severity="error",
                message=f"rank {rank}'s output differs from the single-rank reference (relative RMSE {rel:.3g} > {limit:g}, "
                f"max abs err {abs_e:.3g}): the shards or the collectives do not add up to the full layer",
                details=TpMismatchDetails(rank=rank, max_abs_err=abs_e, max_rel_err=rel_e, relative_rmse=rel))))
    return out


TP_RELATIVE_RMSE = {"bfloat16": 3e-2, "float16": 1e-2, "float32": 1e-4, "float64": 1e-9}
"""||rank output - reference|| / ||reference|| above which the ranks do not add up: a wrong shard is O(1);
rounding the partial sums of a bf16 layer is ~1e-2 (fp32: ~1e-6)."""


def relative_rmse(actual: Any, expected: Any) -> float:
    """||actual - expected|| / ||expected|| over the float tensors (fp64 arithmetic)."""
    from .replay.common import flat

    num = den = 0.0
    for a, e in zip(flat(actual), flat(expected)):
        if a.shape != e.shape:
            return float("inf")
        d = a.detach().double() - e.detach().double()
        num += float((d * d).sum())
        den += float((e.detach().double() ** 2).sum())
    return (num / den) ** 0.5 if den > 0 else (0.0 if num == 0 else float("inf"))
