"""A narrow to a constant pins the token dim (maybe_mark_dynamic specialises silently): each size compiles its own graph."""

import torch
import torch.nn as nn


class Layer(nn.Module):
    def __init__(self, hidden: int = 16):
        super().__init__()
        self.proj = nn.Linear(hidden, hidden)
        self.register_buffer("bias", torch.zeros(64, hidden))

    def forward(self, x):
        h = self.proj(x)
        if h.shape[0] == 16:  # pins the token dim
            h = h * 2
        return h + self.bias[: h.shape[0]]


def make(tokens: int = 8):
    torch.manual_seed(0)
    return Layer(), (torch.randn(tokens, 16),)
