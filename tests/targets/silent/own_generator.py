"""A custom op that draws noise from a generator of its own: CUDA graphs capture its draws once."""

import torch
import torch.nn as nn

GEN = torch.Generator().manual_seed(0)


@torch.library.custom_op("pcgs::jitter", mutates_args=())
def jitter(x: torch.Tensor) -> torch.Tensor:
    return x + 0.1 * torch.randn(x.shape, generator=GEN, dtype=x.dtype)  # draws from its own generator


@jitter.register_fake
def _(x):
    return torch.empty_like(x)


class Layer(nn.Module):
    def __init__(self, hidden: int = 16):
        super().__init__()
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x):
        return jitter(self.proj(x))


def make(tokens: int = 8):
    torch.manual_seed(0)
    return Layer(), (torch.randn(tokens, 16),)
