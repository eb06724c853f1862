"""Ops defined in C++ (extension.cpp, TORCH_LIBRARY, built on first use) with their fakes in Python: one without a
fake, three whose fake lies (shape, dtype, strides)."""

from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.cpp_extension import load_inline

load_inline("pcgd_ext", cpp_sources=[Path(__file__).with_name("extension.cpp").read_text()], is_python_module=False)


@torch.library.register_fake("pcgd_ext::rowsum")
def _(x):
    return torch.empty_like(x)  # lies about the shape


@torch.library.register_fake("pcgd_ext::halve")
def _(x):
    return torch.empty_like(x)  # lies about the dtype


@torch.library.register_fake("pcgd_ext::colmajor")
def _(x):
    return torch.empty_like(x)  # lies about the strides


class Layer(nn.Module):
    def __init__(self, hidden: int = 16):
        super().__init__()
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x):
        ops = torch.ops.pcgd_ext
        h = self.proj(x)
        return ops.scale2(h) + ops.rowsum(h) + ops.halve(h).float() + ops.colmajor(h)


def make(tokens: int = 8):
    torch.manual_seed(0)
    return Layer(), (torch.randn(tokens, 16),)
