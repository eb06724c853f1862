"""A forward whose eager output is -inf: a replay that compares NaN/Inf as equal would read ok."""

import torch
import torch.nn as nn


class Layer(nn.Module):
    def __init__(self, hidden: int = 16):
        super().__init__()
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x):
        h = self.proj(x)
        scores = torch.log(h - h.max())  # log(0) at the maximum: -inf
        return scores.softmax(-1)


def make(tokens: int = 8):
    torch.manual_seed(0)
    return Layer(), (torch.randn(tokens, 16),)
