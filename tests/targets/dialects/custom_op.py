"""One op per fixable kind, registered with torch.library.custom_op (+ .register_fake); the output alias is in
custom_op_alias.py (torch refuses it eagerly, which would hide the other ops' eager outputs)."""

import torch
import torch.nn as nn


@torch.library.custom_op("pcgd_co::scale2", mutates_args=())
def scale2(x: torch.Tensor) -> torch.Tensor:  # no fake impl
    return x * 2


@torch.library.custom_op("pcgd_co::rowsum", mutates_args=())
def rowsum(x: torch.Tensor) -> torch.Tensor:
    return x.sum(-1, keepdim=True)


@rowsum.register_fake
def _(x):
    return torch.empty_like(x)  # lies about the shape


@torch.library.custom_op("pcgd_co::halve", mutates_args=())
def halve(x: torch.Tensor) -> torch.Tensor:
    return (x / 2).to(torch.float64)


@halve.register_fake
def _(x):
    return torch.empty_like(x)  # lies about the dtype


@torch.library.custom_op("pcgd_co::colmajor", mutates_args=())
def colmajor(x: torch.Tensor) -> torch.Tensor:
    out = x.new_empty((x.shape[1], x.shape[0])).t()  # a column-major result, as a BLAS kernel writes it
    out.copy_(x + 1)
    return out


@colmajor.register_fake
def _(x):
    return torch.empty_like(x)  # lies about the strides


@torch.library.custom_op("pcgd_co::store", mutates_args=())
def store(k: torch.Tensor, cache: torch.Tensor) -> None:  # writes cache, declares nothing
    cache[: k.shape[0]].copy_(k)


@store.register_fake
def _(k, cache):
    return None


@torch.library.custom_op("pcgd_co::double", mutates_args=("scratch",))
def double(x: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:  # declares scratch written, never writes it
    return x * 2


@double.register_fake
def _(x, scratch):
    return torch.empty_like(x)


class Layer(nn.Module):
    def __init__(self, hidden: int = 16, max_tokens: int = 64):
        super().__init__()
        self.proj = nn.Linear(hidden, hidden)
        self.register_buffer("cache", torch.zeros(max_tokens, hidden))

    def forward(self, x):
        h = self.proj(x)
        store(h, self.cache)
        out = scale2(h) + rowsum(h) + halve(h).float() + colmajor(h) + double(h, torch.empty_like(h))
        return out + self.cache[: h.shape[0]]


def make(tokens: int = 8):
    torch.manual_seed(0)
    return Layer(), (torch.randn(tokens, 16),)
