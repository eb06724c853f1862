"""Targets whose pieces go wrong at replay, each at a known piece index.

Layout of every target: [0] captured linear, [1] split attention, [2] captured piece with the problem.
"""

import torch
import torch.nn as nn

SPLIT_OPS = ["pcg_bad::attention"]
STATE = {"calls": 0}


@torch.library.custom_op("pcg_bad::attention", mutates_args=())
def attention(x: torch.Tensor) -> torch.Tensor:
    return x.softmax(-1)


@attention.register_fake
def _(x):
    return torch.empty_like(x)


@torch.library.custom_op("pcg_bad::host_sync_scale", mutates_args=())
def host_sync_scale(x: torch.Tensor) -> torch.Tensor:
    scale = float(x.abs().max())  # a host sync: forbidden inside CUDA graph capture
    return x / scale


@host_sync_scale.register_fake
def _(x):
    return torch.empty_like(x)


@torch.library.custom_op("pcg_bad::stepped", mutates_args=())
def stepped(x: torch.Tensor) -> torch.Tensor:
    STATE["calls"] += 1  # Python state read at run time: baked into a captured graph
    return x * float(STATE["calls"])


@stepped.register_fake
def _(x):
    return torch.empty_like(x)


class Bad(nn.Module):
    def __init__(self, op):
        super().__init__()
        self.lin = nn.Linear(16, 16)
        self.out = nn.Linear(16, 16)
        self.op = op

    def forward(self, x):
        y = attention(self.lin(x))
        return self.out(self.op(y + 1))


def make_host_sync(tokens: int = 8, device: str = "cpu"):
    return Bad(host_sync_scale).to(device), (torch.randn(tokens, 16, device=device),)


def make_baked(tokens: int = 8, device: str = "cpu"):
    return Bad(stepped).to(device), (torch.randn(tokens, 16, device=device),)


def make_good(tokens: int = 8, device: str = "cpu"):
    return Bad(torch.relu).to(device), (torch.randn(tokens, 16, device=device),)
