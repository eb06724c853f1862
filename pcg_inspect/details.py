"""Typed details of each finding kind: one small frozen record per kind.

A ``Finding`` carries one of these in ``details``; in JSON it is a plain object whose keys are
the record's fields. ``diff`` and the views read these records, never guessed dict keys, and
Which record each kind carries is declared with the kind (``kinds.py``; a test checks every finding kind has one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional


@dataclass(frozen=True)
class Details:
    """No extra facts (data_ptr)."""

    def match_key(self) -> str:
        """What, beyond kind, op and function, tells two findings of this kind apart in ``diff``."""
        return ""


@dataclass(frozen=True)
class OpDetails(Details):
    """An op seen in the eager run: what it was called with and what it did."""

    observed_inputs: dict[str, Any]
    """Argument name -> shape (a list) for tensors, repr for other values."""
    observed_outputs: tuple[tuple[int, ...], ...]
    """Shape of each tensor output."""
    mutated: tuple[str, ...]
    """Arguments whose values changed during the call."""
    declared_mutable: tuple[str, ...]
    """Arguments the schema marks mutable (``Tensor(a!)`` / mutates_args)."""
    library_frame: str = ""
    """For an opaque library call: 'file:line' of the library code Dynamo reached."""
    aliased: tuple[str, ...] = ()
    """Inputs an output shares storage with (every tensor input when torch refused the alias without saying which)."""


@dataclass(frozen=True)
class GuardDetails(Details):
    """A guard that failed between calls (a recompile), or one that bakes a Python value in."""

    guard: str
    """The guard text, e.g. "L['self'].step == 1"."""
    cause: str
    """zero_one | static_first | shape | state | baked | other."""
    capture_sizes: tuple[int, ...] = ()
    """Sizes at which it recompiled (empty for a guard that did not fail during the trace)."""
    frames: tuple[str, ...] = ()
    """'function (file:line)' of each compiled frame it affected."""
    tensors: tuple[str, ...] = ()
    """Inputs whose shapes the guard checks."""
    source: str = ""
    """Dynamo's source of the guarded value, e.g. "G['FLAGS']['extend']"."""

    def match_key(self) -> str:
        return self.cause if self.cause != "baked" else f"baked:{self.source}"


@dataclass(frozen=True)
class SplitOutputDetails(Details):
    """A split op's fresh result read by a later captured piece."""

    reader_piece: int


@dataclass(frozen=True)
class ErrorDetails(Details):
    """An exception from Dynamo or the target."""

    exception: str = ""
    """'Type: first line'."""
    capture_size: Optional[int] = None


@dataclass(frozen=True)
class HostSyncDetails(Details):
    """An op inside a captured piece that reads device memory on the host or sizes a tensor by data."""

    op: str
    """The op that syncs: aten._local_scalar_dense (.item()), aten.nonzero, ..."""
    cause: str
    """scalar (.item()/int()/float()/tolist()) | dynamic_shape (nonzero, mask index, unique, ...) | repeat_interleave | host_copy."""
    seen_in: str
    """graph (Dynamo traced it) | custom_op (inside that op's kernel, eager run) | eager (code Dynamo never reached) |
    split_op (inside a split op's kernel: eager under tc_piecewise)."""
    inside_op: str = ""
    """The custom op whose kernel syncs, for seen_in=custom_op."""
    graph: Optional[int] = None
    piece: Optional[int] = None
    node: str = ""
    """FX node name in the captured graph."""
    output_size: str = ""
    """repeat_interleave: an expression of sizes known before forward that equalled the total at every traced size."""
    eager_under: tuple[str, ...] = ()
    """The capture backends under which it runs eagerly, so it blocks only the others: tc_piecewise inside a split op,
    breakable inside a break point (an ``@eager_on_graph`` function or a break op)."""

    def match_key(self) -> str:
        return f"{self.cause}:{self.inside_op}"


@dataclass(frozen=True)
class BufferDetails(Details):
    """A module attribute holding a tensor, rebound in forward."""

    attribute: str
    module: str
    """The module's class name."""
    is_buffer: bool = True
    """A registered buffer or parameter (False: a plain tensor attribute)."""

    def match_key(self) -> str:
        return self.attribute


@dataclass(frozen=True)
class CaptureDetails(Details):
    """Where CUDA-graph capture or replay of a piece went wrong."""

    capture_size: int
    graph: int
    piece: int
    node: str = ""
    """FX node whose inclusion fails capture (or whose output first differs)."""
    node_index: int = -1
    """Its position among the piece's call nodes."""
    target: str = ""
    """The node's op."""
    primary_error: str = ""
    """The first error raised inside capture (not the sticky one that follows)."""
    cause: str = ""
    """host_sync | pageable_copy | stream_state | other_stream | stream_sync | baked_value | stale_address | uninitialised | rng | unknown."""
    phase: str = "capture"
    """warmup (the compiled piece raised before capture) | capture | replay."""
    max_abs_err: float = 0.0
    searched: tuple[int, ...] = ()
    """(lo, hi) prefix lengths still to search when a sticky CUDA error stopped the bisection ('' node)."""
    backend: str = "tc_piecewise"
    """The capture backend whose capture or replay this was (tc_piecewise, breakable, full)."""

    def match_key(self) -> str:
        return f"{self.cause}:{self.target}" + (f":{self.backend}" if self.backend != "tc_piecewise" else "")


@dataclass(frozen=True)
class RankDetails(Details):
    """Ranks that disagree."""

    rank: int
    item: str
    """pieces, graph breaks, ... | hang | error."""
    rank0: str = ""
    other: str = ""
    """The same item on this rank."""

    def match_key(self) -> str:
        return f"{self.rank}:{self.item}"


@dataclass(frozen=True)
class TpMismatchDetails(Details):
    """A rank's output against the single-rank reference."""

    rank: int
    max_abs_err: float
    max_rel_err: float
    relative_rmse: float = 0.0
    """||rank output - reference|| / ||reference||: what decides (a dtype's rounding stays far below a wrong shard)."""

    def match_key(self) -> str:
        return str(self.rank)


@dataclass(frozen=True)
class TimeoutDetails(Details):
    """The run hit --timeout."""

    stage: str
    """load | trace | analyze | split | replay | worker | rank N."""
    timeout_s: float
    stack: tuple[str, ...] = ()
    """'file:line in function' of the target's frames when time ran out, innermost last."""


@dataclass(frozen=True)
class TargetExitDetails(Details):
    """The target ended the process (sys.exit, os._exit, a signal, a crash) instead of returning."""

    stage: str
    """import | load | trace | analyze | split | replay (where the run was)."""
    how: str
    """'sys.exit(3)', 'os._exit(7)', 'signal SIGSEGV', 'exit code 1'."""
    code: int
    """The exit code (a signal: minus its number)."""
    stack: tuple[str, ...] = ()
    """'file:line in function' of the target's frames when it exited, innermost last."""


@dataclass(frozen=True)
class ReproDetails(Details):
    """Two eager calls on identical inputs (host_state, non_finite)."""

    cause: str
    """host_state: 'host_state', 'rng', 'host_tensor', 'path', 'output'; non_finite: 'op', 'output'."""
    capture_size: Optional[int] = None
    max_rel: float = 0.0
    """Relative difference of the op's outputs between the two calls."""
    other_op: str = ""
    """'path': the op the second call ran instead."""

    def match_key(self) -> str:
        return self.cause


@dataclass(frozen=True)
class ParamDetails(Details):
    """Parameters the forward rewrote in place (param_data_mutation)."""

    parameters: tuple[str, ...]

    def match_key(self) -> str:
        return ",".join(self.parameters)


@dataclass(frozen=True)
class DivergenceDetails(Details):
    """Side effects the compiled forward drops (compile_divergence)."""

    effects: tuple[str, ...]
    """What changed in eager and not (or otherwise) compiled: 'self.captured', 'hooks.ACTIVATIONS'."""
    is_compiling_branch: bool = False
    """An ``is_compiling()`` branch was found (the finding's line)."""

    def match_key(self) -> str:
        return ",".join(self.effects)


@dataclass(frozen=True)
class BreakArgDetails(Details):
    """A breakable break point whose argument (or result) is not what its replay will see."""

    function: str
    """The break point: an ``@eager_on_graph`` function ('module.qualname') or a break op ('ns.op')."""
    argument: str
    """'arg1' / a keyword / 'return'."""
    reason: str
    """python_value (a Python value that changes between calls) | foreign_tensor (a tensor outside the inputs, the
    weights and the forward's own allocations whose identity changes) | returned_value (a non-tensor result)."""
    captured: str = ""
    """Its value (repr) at the first call: what capture keeps."""
    now: str = ""
    """At the second call."""
    capture_size: int = 0
    seen: str = "predicted"
    """predicted (two eager calls with other inputs, on any device) | replay (the GPU replay used the stale value)."""

    def match_key(self) -> str:
        return f"{self.function}:{self.argument}"


@dataclass(frozen=True)
class OutputStructureDetails(Details):
    """A forward whose output structure changes with the size."""

    sizes: tuple[int, ...]
    structures: tuple[str, ...]
    """The structure at each size (containers, each tensor's dims after the first and dtype)."""
