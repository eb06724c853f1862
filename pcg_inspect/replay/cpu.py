"""CPU replay: re-run each piece on its recorded inputs and the whole split module against the unsplit graph.

No CUDA graph is captured on a CPU. This checks the split itself (mutation order, pieces that read
state): a piece that gives another result on the same inputs reads state that changed, and the
first node that differs between two runs is named.
"""

from __future__ import annotations

import math
import time
from typing import Any, Optional, Sequence

from ..report import PieceReplay, SizeReplay
from .common import (NodeRunner, ReplayInput, clone, compare, first_difference, fresh_args, non_finite_message,
                     uninitialised_outputs)
from .localise import Mismatch, PieceFacts, classify_mismatch


def replay_size(ri: ReplayInput, split_ops: Sequence[str]) -> tuple[SizeReplay, list[PieceFacts]]:
    """Replay one graph at one size on the CPU."""
    import torch

    from ..split import split_graph

    split_gm, items = split_graph(ri.gm, split_ops)
    fresh = fresh_args(ri.gm, ri.args, seed=ri.capture_size)
    facts: list[PieceFacts] = []
    with torch.no_grad():
        expected = ri.gm(*clone(fresh))
        records: dict[str, tuple[tuple[Any, ...], Any]] = {}
        actual = _PieceRecorder(split_gm, records).run(*clone(fresh))
        pieces = []
        for it in items:
            saved_in, saved_out = records.get(it.submod_name, ((), None))
            t0 = time.perf_counter()
            out = it.module(*clone(saved_in))
            us = (time.perf_counter() - t0) * 1e6
            abs_e, rel_e, close = compare(out, saved_out, uninitialised_outputs(it.module))
            msg = "" if close else non_finite_message(abs_e, "re-running the piece on its recorded inputs gave another result "
                                                      "(it reads state that changed)")
            pieces.append(PieceReplay(it.graph_id, it.is_split, "ok" if close else "mismatch", abs_e, rel_e, us, 0.0, msg))
            if not close and not it.is_split and not math.isnan(abs_e):
                mismatch = _first_differing_node(it.module, saved_in)
                facts.append(PieceFacts(ri.capture_size, ri.graph_index, it.graph_id, mismatch=mismatch))
    abs_e, rel_e, close = compare(actual, expected)
    status = "ok" if close and all(p.status == "ok" for p in pieces) else "mismatch"
    msg = "" if close else non_finite_message(abs_e, "the split module differs from the unsplit graph on the same fresh inputs")
    return SizeReplay(ri.capture_size, ri.graph_index, status, tuple(pieces), abs_e, rel_e, 0.0, 0, msg), facts


def _first_differing_node(module: Any, args: tuple[Any, ...]) -> Optional[Mismatch]:
    runs = []
    for _ in range(2):
        runner = NodeRunner(module, keep=True)
        runner.run(*clone(args))
        runs.append(runner.values)
    found = first_difference(runs[1], runs[0], module)
    if found is None:
        return None
    node, err = found
    return Mismatch(node, err, classify_mismatch(node))


class _PieceRecorder:
    """Runs a split GraphModule and records each submodule's inputs and outputs (clones)."""

    def __init__(self, split_gm: Any, records: dict[str, tuple[tuple[Any, ...], Any]]) -> None:
        import torch.fx

        class _Interp(torch.fx.Interpreter):
            def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
                saved = clone(tuple(args))
                out = super().call_module(target, args, kwargs)
                records[str(target)] = (saved, clone(out))
                return out

        self.interp = _Interp(split_gm)

    def run(self, *args: Any) -> Any:
        return self.interp.run(*args)
