"""A forward that loops over a module-attribute list: Dynamo guards on its length and contents."""

import torch
import torch.nn as nn


class Layer(nn.Module):
    def __init__(self, hidden: int = 16):
        super().__init__()
        self.proj = nn.Linear(hidden, hidden)
        self.scales = [1.0, 0.5]  # Python state the compiled graph bakes in

    def forward(self, x):
        h = self.proj(x)
        for s in self.scales:  # unrolled into the graph
            h = h * s
        return h


def make(tokens: int = 8):
    torch.manual_seed(0)
    return Layer(), (torch.randn(tokens, 16),)
