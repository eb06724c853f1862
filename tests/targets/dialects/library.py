"""One op per fixable kind, registered with torch.library.Library + define + impl (+ fakes in both forms)."""

import torch
import torch.nn as nn

_lib = torch.library.Library("pcgd_lib", "DEF")
_lib.define("scale2(Tensor x) -> Tensor")
_lib.define("rowsum(Tensor x) -> Tensor")
_lib.define("halve(Tensor x) -> Tensor")
_lib.define("colmajor(Tensor x) -> Tensor")
_lib.define("store(Tensor k, Tensor cache) -> ()")
_lib.define("double(Tensor x, Tensor(a!) scratch) -> Tensor")
_lib.define("flat(Tensor x) -> Tensor")


def scale2(x):  # no fake impl
    return x * 2


def rowsum(x):
    return x.sum(-1, keepdim=True)


def halve(x):
    return (x / 2).to(torch.float64)


def colmajor(x):
    out = x.new_empty((x.shape[1], x.shape[0])).t()  # a column-major result, as a BLAS kernel writes it
    out.copy_(x + 1)
    return out


def store(k, cache):  # writes cache, the schema says nothing
    cache[: k.shape[0]].copy_(k)


def double(x, scratch):  # the schema says it writes scratch; it never does
    return x * 2


def flat(x):
    if x.is_contiguous():
        return x.view(-1)  # a view of the input in this branch
    return x.reshape(-1).clone()


for _fn in (scale2, rowsum, halve, colmajor, store, double, flat):
    _lib.impl(_fn.__name__, _fn, "CPU")
    _lib.impl(_fn.__name__, _fn, "CUDA")


def _rowsum_fake(x):
    return torch.empty_like(x)  # lies about the shape


_lib._register_fake("rowsum", _rowsum_fake)


@torch.library.register_fake("pcgd_lib::halve")
def _(x):
    return torch.empty_like(x)  # lies about the dtype


def _colmajor_fake(x):
    return torch.empty_like(x)  # lies about the strides


torch.library.register_fake("pcgd_lib::colmajor", _colmajor_fake)


@torch.library.register_fake("pcgd_lib::store")
def _(k, cache):
    return None


@torch.library.register_fake("pcgd_lib::double")
def _(x, scratch):
    return torch.empty_like(x)


@torch.library.register_fake("pcgd_lib::flat")
def _(x):
    return x.new_empty((x.numel(),))


class Layer(nn.Module):
    def __init__(self, hidden: int = 16, max_tokens: int = 64):
        super().__init__()
        self.proj = nn.Linear(hidden, hidden)
        self.register_buffer("cache", torch.zeros(max_tokens, hidden))

    def forward(self, x):
        ops = torch.ops.pcgd_lib
        h = self.proj(x)
        ops.store(h, self.cache)
        out = ops.scale2(h) + ops.rowsum(h) + ops.halve(h).float() + ops.colmajor(h) + ops.double(h, torch.empty_like(h))
        return out + ops.flat(h).view_as(h) + self.cache[: h.shape[0]]


def make(tokens: int = 8):
    torch.manual_seed(0)
    return Layer(), (torch.randn(tokens, 16),)
