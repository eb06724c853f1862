"""Activation capture kept in both eager and compiled forwards (no is_compiling() branch): no divergence."""

import torch
import torch.nn as nn


class Layer(nn.Module):
    def __init__(self, hidden: int = 16):
        super().__init__()
        self.proj = nn.Linear(hidden, hidden)
        self.captured = []

    def forward(self, x):
        h = self.proj(x)
        self.captured.append(h.detach())
        return h * 2


def make(tokens: int = 8):
    torch.manual_seed(0)
    return Layer(), (torch.randn(tokens, 16),)
