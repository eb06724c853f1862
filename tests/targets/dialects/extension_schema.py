"""Ops defined in C++ (extension.cpp) whose schema or kernel is wrong: an undeclared write, an over-declared one and
an output that aliases its input. The edits belong in C++ and a rebuild: fix states them, edits nothing."""

from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.cpp_extension import load_inline

load_inline("pcgd_ext", cpp_sources=[Path(__file__).with_name("extension.cpp").read_text()], is_python_module=False)


@torch.library.register_fake("pcgd_ext::store")
def _(k, cache):
    return None


@torch.library.register_fake("pcgd_ext::twice")
def _(x, scratch):
    return torch.empty_like(x)


@torch.library.register_fake("pcgd_ext::flat")
def _(x):
    return x.new_empty((x.numel(),))


class Layer(nn.Module):
    def __init__(self, hidden: int = 16, max_tokens: int = 64):
        super().__init__()
        self.proj = nn.Linear(hidden, hidden)
        self.register_buffer("cache", torch.zeros(max_tokens, hidden))

    def forward(self, x):
        ops = torch.ops.pcgd_ext
        h = self.proj(x)
        ops.store(h, self.cache)
        out = ops.twice(h, torch.empty_like(h)) + ops.flat(h).view_as(h)
        return out + self.cache[: h.shape[0]]


def make(tokens: int = 8):
    torch.manual_seed(0)
    return Layer(), (torch.randn(tokens, 16),)
