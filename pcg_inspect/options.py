"""What a run was asked to do: one record, one serialisation, the defaults written once.

Every front end (the CLI, the Python API) builds a ``TraceOptions``; every child process (GPU
worker, ranks, the sides of ``diff``) receives it as ``to_dict()`` JSON and rebuilds it with
``from_dict``, so no option is ever lost on a process boundary. Torch is not imported here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from .errors import UsageError

DEFAULT_CAPTURE_SIZES: tuple[int, ...] = (1, 8, 64)
"""Decode, a small batch, a prefill chunk."""
DEFAULT_TIMEOUT_S = 600.0
"""The whole run, children and ranks included; 0 means no limit."""
DYNAMIC_MODES = ("maybe", "unbacked", "static")
ATTN_MODES = ("split", "sdpa", "eager")
FLOAT_DTYPES = {
    "float32": "float32", "fp32": "float32", "float": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "half": "float16",
}
"""Accepted --dtype spellings -> torch dtype names (floating types a layer runs in)."""


@dataclass(frozen=True)
class ModelOptions:
    """How to build the layers of a model target (ignored for file targets, which reject them)."""

    layers: str = "0"
    """'0', '0-3' or '1,5': decoder layer indices, run in sequence."""
    num_layers: int = 0
    """> 0: the whole model with that many layers (embeddings, layers, final norm)."""
    attn: str = "split"
    """split (pcg_inspect::attention split op) | sdpa | eager."""
    overrides: tuple[str, ...] = ()
    """key=value config overrides (JSON values), like sglang's --json-model-override-args."""

    def is_default(self) -> bool:
        """True when no model option was changed from its default."""
        return self == ModelOptions()


@dataclass(frozen=True)
class TraceOptions:
    """One ``trace`` run. Frozen; ``dataclasses.replace`` makes variants."""

    target: str
    """file.py:factory, package.module:factory, or a model (bundled name, folder, org/name)."""
    capture_sizes: tuple[int, ...] = DEFAULT_CAPTURE_SIZES
    split_ops: tuple[str, ...] = ()
    """Extra split ops (any spelling); the target's SPLIT_OPS and sglang's registry join them."""
    device: str = "cpu"
    """cpu | cuda | cuda:N."""
    dtype: Optional[str] = None
    """A FLOAT_DTYPES name, or None for what the factory builds."""
    dynamic: str = "maybe"
    """How token dims are marked: maybe (sglang) | unbacked | static."""
    replay: bool = True
    isolate: bool = False
    """GPU replay: each piece in its own memory pool."""
    use_sglang_split_ops: bool = True
    observe_ops: bool = True
    """Run the target eagerly under a dispatch mode to check its ops (the op findings)."""
    model: ModelOptions = field(default_factory=ModelOptions)
    nproc: int = 1
    """Tensor-parallel ranks."""
    timeout_s: float = DEFAULT_TIMEOUT_S
    command: str = ""
    """The command line as typed, for the report."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TraceOptions":
        """The inverse of ``to_dict`` (unknown keys are an error: a process boundary never drops one)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise UsageError(f"unknown trace option(s): {', '.join(sorted(unknown))}")
        values = dict(data)
        values["model"] = ModelOptions(**{**values.get("model", {}), "overrides": tuple(values.get("model", {}).get("overrides", ()))})
        for key in ("capture_sizes", "split_ops"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    def validate(self) -> "TraceOptions":
        """Check every value a user can get wrong; returns self.

        Raises:
            UsageError: one line naming the option and the bad value.
        """
        if self.dynamic not in DYNAMIC_MODES:
            raise UsageError(f"--dynamic must be maybe, unbacked or static, got {self.dynamic!r}")
        if self.device != "cpu" and self.device != "cuda" and not _is_cuda_index(self.device):
            raise UsageError(f"--device must be cpu, cuda or cuda:N, got {self.device!r}")
        if self.dtype is not None and self.dtype not in FLOAT_DTYPES:
            raise UsageError(f"--dtype must be a floating type: float32, bfloat16 or float16 (got {self.dtype!r})")
        if self.nproc < 1:
            raise UsageError(f"--nproc must be 1 or more, got {self.nproc}")
        if self.timeout_s < 0:
            raise UsageError(f"--timeout must be 0 (no limit) or a number of seconds, got {self.timeout_s:g}")
        if not self.capture_sizes or any(s <= 0 for s in self.capture_sizes):
            raise UsageError("--tokens needs at least one positive size")
        if self.model.attn not in ATTN_MODES:
            raise UsageError(f"--attn must be split, sdpa or eager, got {self.model.attn!r}")
        if self.model.num_layers < 0:
            raise UsageError(f"--num-layers must be 0 or more, got {self.model.num_layers}")
        return self

    @property
    def torch_dtype_name(self) -> Optional[str]:
        """The torch dtype name of ``dtype`` (float32 / bfloat16 / float16), None when unset."""
        return FLOAT_DTYPES[self.dtype] if self.dtype else None


@dataclass(frozen=True)
class Bisect:
    """Continue narrowing a capture failure in a fresh process (the last attempt left a sticky CUDA error)."""

    capture_size: int
    graph: int
    piece: int
    phase: str
    """capture | replay."""
    lo: int
    """A prefix of this many call nodes passes."""
    hi: int
    """A prefix of this many fails."""


@dataclass(frozen=True)
class RunContext:
    """Where a pipeline runs: its rank among tensor-parallel ranks, and a bisection to continue (set by
    the launcher, never by a user)."""

    rank: int = 0
    world_size: int = 1
    bisect: Optional[Bisect] = None


def parse_capture_sizes(text: str) -> tuple[int, ...]:
    """'1,8,512' -> (1, 8, 512), duplicates dropped (UsageError otherwise)."""
    sizes: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not (part.isascii() and part.isdigit()) or int(part) <= 0:
            raise UsageError(f"--tokens expects positive integers separated by commas, got {text!r}")
        sizes.append(int(part))
    if not sizes:
        raise UsageError("--tokens needs at least one size")
    return tuple(dict.fromkeys(sizes))


def _is_cuda_index(device: str) -> bool:
    head, _, index = device.partition(":")
    return head == "cuda" and index.isascii() and index.isdigit()


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
