"""Activation capture skipped under compile (pytorch 173452): the compiled model silently drops a side effect."""

import torch
import torch.nn as nn


class Layer(nn.Module):
    def __init__(self, hidden: int = 16):
        super().__init__()
        self.proj = nn.Linear(hidden, hidden)
        self.captured = []

    def forward(self, x):
        h = self.proj(x)
        if not torch.compiler.is_compiling():  # skipped when compiled
            self.captured.append(h.detach())
        return h * 2


def make(tokens: int = 8):
    torch.manual_seed(0)
    return Layer(), (torch.randn(tokens, 16),)
