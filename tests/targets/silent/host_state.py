"""A custom op that reads a Python counter inside its kernel: a CUDA graph replays the capture-time row forever."""

import torch
import torch.nn as nn

STEP = {"n": 0}


@torch.library.custom_op("pcgs::pick", mutates_args=())
def pick(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    STEP["n"] += 1
    return x * table[STEP["n"] % table.shape[0]]  # reads host state


@pick.register_fake
def _(x, table):
    return torch.empty_like(x)


class Layer(nn.Module):
    def __init__(self, hidden: int = 16):
        super().__init__()
        self.proj = nn.Linear(hidden, hidden)
        self.register_buffer("table", torch.randn(4, hidden))

    def forward(self, x):
        return pick(self.proj(x), self.table)


def make(tokens: int = 8):
    torch.manual_seed(0)
    return Layer(), (torch.randn(tokens, 16),)
