"""One op per fixable kind, registered with sglang's @register_custom_op (and @register_split_op)."""

import torch
import torch.nn as nn
from sglang.srt.compilation.compilation_config import register_split_op
from sglang.srt.utils.custom_op import register_custom_op


@register_custom_op(mutates_args=[])
def pcgd_scale2(x: torch.Tensor) -> torch.Tensor:  # no out_shape or fake_impl: sglang's fake returns None
    return x * 2


@register_custom_op(mutates_args=[], out_shape=0)
def pcgd_rowsum(x: torch.Tensor) -> torch.Tensor:  # out_shape=0: a fake like x, which lies about the shape
    return x.sum(-1, keepdim=True)


def _halve_fake(x):
    return torch.empty_like(x)  # lies about the dtype


@register_custom_op(mutates_args=[], fake_impl=_halve_fake)
def pcgd_halve(x: torch.Tensor) -> torch.Tensor:
    return (x / 2).to(torch.float64)


@register_custom_op(op_name="pcgd_colmajor", mutates_args=[], out_shape="x")
def colmajor_kernel(x: torch.Tensor) -> torch.Tensor:  # out_shape="x": a fake like x, which lies about the strides
    out = x.new_empty((x.shape[1], x.shape[0])).t()  # a column-major result, as a BLAS kernel writes it
    out.copy_(x + 1)
    return out


@register_split_op()
@register_custom_op(mutates_args=[])
def pcgd_store(k: torch.Tensor, cache: torch.Tensor) -> None:  # a split op that writes cache, declares nothing
    cache[: k.shape[0]].copy_(k)


@register_custom_op(mutates_args=["scratch"], out_shape=0)
def pcgd_double(x: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:  # declares scratch written, never writes it
    return x * 2


def _flat_fake(x):
    return x.new_empty((x.numel(),))


@register_custom_op(mutates_args=[], fake_impl=_flat_fake)
def pcgd_flat(x: torch.Tensor) -> torch.Tensor:
    if x.is_contiguous():
        return x.view(-1)  # a view of the input in this branch
    return x.reshape(-1).clone()


# register_custom_op registers a CUDA kernel only: CPU runs need the same kernel for the CPU key
for _op in (pcgd_scale2, pcgd_rowsum, pcgd_halve, colmajor_kernel, pcgd_store, pcgd_double, pcgd_flat):
    _name = "pcgd_colmajor" if _op is colmajor_kernel else _op.__name__
    torch.library.impl(f"sglang::{_name}", "CPU")(_op.__wrapped__)


class Layer(nn.Module):
    def __init__(self, hidden: int = 16, max_tokens: int = 64):
        super().__init__()
        self.proj = nn.Linear(hidden, hidden)
        self.register_buffer("cache", torch.zeros(max_tokens, hidden))

    def forward(self, x):
        ops = torch.ops.sglang
        h = self.proj(x)
        ops.pcgd_store(h, self.cache)
        out = ops.pcgd_scale2(h) + ops.pcgd_rowsum(h) + ops.pcgd_halve(h).float() + ops.pcgd_colmajor(h)
        out = out + ops.pcgd_double(h, torch.empty_like(h))
        return out + ops.pcgd_flat(h).view_as(h) + self.cache[: h.shape[0]]


def make(tokens: int = 8):
    torch.manual_seed(0)
    return Layer(), (torch.randn(tokens, 16),)
