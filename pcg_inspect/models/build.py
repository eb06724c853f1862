"""Weights born on the device, in the target dtype, sharded the way the engine shards them.

Layers are constructed with their parameters on the meta device (buffers stay real: rotary
frequencies are computed in ``__init__``). Each parameter is then created directly on ``device`` in
``dtype`` — never a float32 copy on the host, never two copies — from a generator seeded by the
parameter's name, so every rank of a tensor-parallel run and the single-rank reference see slices of
the same full weights.

Tensor parallel follows the config's ``base_model_tp_plan`` (transformers), as sglang shards a
decoder layer: ``colwise`` projections keep their rows of the output dim, ``rowwise`` ones their
columns of the input dim and are followed by an in-place all-reduce, a registered split op with
sglang's ``inplace_all_reduce`` semantics; MoE experts keep every expert with a slice of its
intermediate dim (``packed_colwise`` gate-up, ``rowwise`` down) and the experts' output is
all-reduced (``moe_tp_experts``).
"""

from __future__ import annotations

import contextlib
import fnmatch
import zlib
from typing import Any, Iterator, Optional

import torch
import torch.nn as nn

from ..errors import UsageError

ALL_REDUCE = "pcg_inspect::all_reduce"
SUPPORTED_STYLES = ("colwise", "rowwise", "packed_colwise", "moe_tp_experts", "replicated_with_grad_allreduce")


@torch.library.custom_op(ALL_REDUCE, mutates_args=("x",))
def all_reduce(x: torch.Tensor) -> None:
    """Sum ``x`` over the ranks, in place (sglang's ``inplace_all_reduce``); a no-op on one rank."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(x)


@all_reduce.register_fake
def _(x):
    return None


@contextlib.contextmanager
def params_on_meta() -> Iterator[None]:
    """Modules built inside get their parameters on the meta device (no memory); buffers stay real."""
    original = nn.Module.register_parameter

    def register(module: nn.Module, name: str, param: Optional[nn.Parameter]) -> None:
        original(module, name, param)
        if param is not None and param.device.type != "meta":
            module._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=False)

    nn.Module.register_parameter = register  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]


def materialise(model: nn.Module, device: str, dtype: torch.dtype, std: float, plan: Optional[dict[str, str]] = None,
                rank: int = 0, world_size: int = 1) -> int:
    """Create every meta parameter on ``device`` in ``dtype`` (this rank's shard of it). Returns bytes allocated."""
    total = 0
    for path, module in model.named_modules():
        for name, param in list(module._parameters.items()):
            if param is None or param.device.type != "meta":
                continue
            qualified = f"{path}.{name}" if path else name
            style = _style(plan, path, qualified) if world_size > 1 else None
            value = _shard(_full(qualified, tuple(param.shape), name, device, dtype, std), style, name, rank, world_size)
            module._parameters[name] = nn.Parameter(value.contiguous(), requires_grad=False)
            total += value.numel() * value.element_size()
    if world_size > 1 and plan:
        _reduce_after(model, plan)
    return total


def _full(qualified: str, shape: tuple[int, ...], name: str, device: str, dtype: torch.dtype, std: float) -> torch.Tensor:
    # Random weights with a sane scale; norms start at one, biases at zero (as _init_weights would).
    if len(shape) <= 1 and "norm" in qualified:
        return torch.ones(shape, device=device, dtype=dtype)
    if len(shape) <= 1 and not name.endswith("weight"):
        return torch.zeros(shape, device=device, dtype=dtype)
    gen = torch.Generator(device=device)
    gen.manual_seed(zlib.crc32(qualified.encode()))
    return torch.empty(shape, device=device, dtype=dtype).normal_(0.0, std, generator=gen)


def _style(plan: Optional[dict[str, str]], module_path: str, param_path: str) -> Optional[str]:
    for pattern, style in (plan or {}).items():
        if fnmatch.fnmatchcase(param_path, pattern) or fnmatch.fnmatchcase(module_path, pattern):
            if style not in SUPPORTED_STYLES:
                raise UsageError(f"tensor parallel: {pattern} is {style!r} in the model's base_model_tp_plan, which pcg-inspect "
                                 f"does not shard (it shards {', '.join(SUPPORTED_STYLES)})")
            return style
    return None


def _shard(value: torch.Tensor, style: Optional[str], name: str, rank: int, world_size: int) -> torch.Tensor:
    if style is None or style.startswith("replicated") or style == "moe_tp_experts":
        return value
    if style == "packed_colwise":  # [E, 2I, H]: this rank's rows of the gate half and of the up half
        gate, up = value.chunk(2, dim=1)
        return torch.cat([_slice(gate, 1, rank, world_size), _slice(up, 1, rank, world_size)], dim=1)
    if style == "colwise":
        return _slice(value, 0 if value.dim() <= 2 else 1, rank, world_size)
    if name == "bias":  # rowwise bias: each rank adds its share, the all-reduce sums them
        return value / world_size
    return _slice(value, value.dim() - 1, rank, world_size)  # rowwise: the input dim


def _slice(value: torch.Tensor, dim: int, rank: int, world_size: int) -> torch.Tensor:
    size = value.shape[dim]
    if size % world_size:
        raise UsageError(f"tensor parallel: a dim of size {size} does not split over {world_size} ranks")
    step = size // world_size
    return value.narrow(dim, rank * step, step).clone()


def _reduce_after(model: nn.Module, plan: dict[str, str]) -> None:
    """Row-parallel modules and sharded experts end with an all-reduce of their output (a split op)."""
    for path, module in model.named_modules():
        style = next((s for p, s in plan.items() if fnmatch.fnmatchcase(path, p)), None)
        if style == "moe_tp_experts" or (style == "rowwise" and isinstance(module, nn.Linear)):
            module.register_forward_hook(_all_reduce_output)


def _all_reduce_output(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
    all_reduce(output)
    return output
