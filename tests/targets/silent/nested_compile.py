"""A custom op whose kernel calls a torch.compile(mode="reduce-overhead") helper: a CUDA-graph tree inside the
engine's CUDA graph ("Cannot prepare for replay during capturing stage")."""

import torch
import torch.nn as nn


def _scale_shift(t):
    return t * 2 + 1


_helper = torch.compile(_scale_shift, mode="reduce-overhead")


@torch.library.custom_op("pcgs::boost", mutates_args=())
def boost(x: torch.Tensor) -> torch.Tensor:
    return _helper(x).clone()  # compiled code inside the op


@boost.register_fake
def _(x):
    return torch.empty_like(x)


class Layer(nn.Module):
    def __init__(self, hidden: int = 16):
        super().__init__()
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x):
        return boost(self.proj(x))


def make(tokens: int = 8):
    torch.manual_seed(0)
    return Layer(), (torch.randn(tokens, 16),)
