"""torch.cond on a device value: no graph break, but the predicate is read on the host every call."""

import torch
import torch.nn as nn


class Layer(nn.Module):
    def __init__(self, hidden: int = 16):
        super().__init__()
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x):
        h = self.proj(x)
        return torch.cond(h.sum() > 0, lambda t: t * 2, lambda t: t - 1, (h,))  # a device predicate


def make(tokens: int = 8):
    torch.manual_seed(0)
    return Layer(), (torch.randn(tokens, 16),)
