"""A forward that rewrites its weight through .data (pytorch 183313): the weight's storage is swapped each call."""

import torch
import torch.nn as nn


class Masked(nn.Module):
    def __init__(self, hidden: int = 16):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(hidden, hidden))
        self.register_buffer("mask", (torch.rand(hidden, hidden) > 0.5).float())

    def forward(self, x):
        self.weight.data *= self.mask  # rewrites the parameter
        return x @ self.weight.t()


def make(tokens: int = 8):
    torch.manual_seed(0)
    return Masked(), (torch.randn(tokens, 16),)
