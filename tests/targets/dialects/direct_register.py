"""One op per fixable kind, registered with direct_register_custom_op (vLLM's helper; sglang's copy here, which
takes the same op_name, op_func, mutates_args, fake_impl, target_lib)."""

import torch
import torch.nn as nn
from sglang.srt.utils.common import direct_register_custom_op

_lib = torch.library.Library("pcgd_dr", "FRAGMENT")


def scale2(x: torch.Tensor) -> torch.Tensor:  # no fake impl
    return x * 2


def rowsum(x: torch.Tensor) -> torch.Tensor:
    return x.sum(-1, keepdim=True)


def _rowsum_fake(x):
    return torch.empty_like(x)  # lies about the shape


def halve(x: torch.Tensor) -> torch.Tensor:
    return (x / 2).to(torch.float64)


def _halve_fake(x):
    return torch.empty_like(x)  # lies about the dtype


def colmajor(x: torch.Tensor) -> torch.Tensor:
    out = x.new_empty((x.shape[1], x.shape[0])).t()  # a column-major result, as a BLAS kernel writes it
    out.copy_(x + 1)
    return out


def _colmajor_fake(x):
    return torch.empty_like(x)  # lies about the strides


def store(k: torch.Tensor, cache: torch.Tensor) -> None:  # writes cache, declares nothing
    cache[: k.shape[0]].copy_(k)


def double(x: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:  # declares scratch written, never writes it
    return x * 2


def flat(x: torch.Tensor) -> torch.Tensor:
    if x.is_contiguous():
        return x.view(-1)  # a view of the input in this branch
    return x.reshape(-1).clone()


def _same_fake(x, *rest):
    return torch.empty_like(x)


def _flat_fake(x):
    return x.new_empty((x.numel(),))


direct_register_custom_op("scale2", scale2, [], target_lib=_lib)
direct_register_custom_op(op_name="rowsum", op_func=rowsum, mutates_args=[], fake_impl=_rowsum_fake, target_lib=_lib)
direct_register_custom_op("halve", halve, [], _halve_fake, _lib)
direct_register_custom_op(
    op_name="colmajor",
    op_func=colmajor,
    mutates_args=[],
    fake_impl=_colmajor_fake,
    target_lib=_lib,
)
direct_register_custom_op("store", store, mutates_args=[], fake_impl=lambda k, cache: None, target_lib=_lib)
direct_register_custom_op("double", double, ["scratch"], fake_impl=_same_fake, target_lib=_lib)
direct_register_custom_op("flat", flat, [], fake_impl=_flat_fake, target_lib=_lib)
for _fn in (scale2, rowsum, halve, colmajor, store, double, flat):  # the helper registers a CUDA kernel only
    _lib.impl(_fn.__name__, _fn, "CPU")


class Layer(nn.Module):
    def __init__(self, hidden: int = 16, max_tokens: int = 64):
        super().__init__()
        self.proj = nn.Linear(hidden, hidden)
        self.register_buffer("cache", torch.zeros(max_tokens, hidden))

    def forward(self, x):
        ops = torch.ops.pcgd_dr
        h = self.proj(x)
        ops.store(h, self.cache)
        out = ops.scale2(h) + ops.rowsum(h) + ops.halve(h).float() + ops.colmajor(h) + ops.double(h, torch.empty_like(h))
        return out + ops.flat(h).view_as(h) + self.cache[: h.shape[0]]


def make(tokens: int = 8):
    torch.manual_seed(0)
    return Layer(), (torch.randn(tokens, 16),)
