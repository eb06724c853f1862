"""A torch.library.custom_op whose output is a view of its input in one branch: torch refuses it when called, so the
eager forward itself fails."""

import torch
import torch.nn as nn


@torch.library.custom_op("pcgd_co::flat", mutates_args=())
def flat(x: torch.Tensor) -> torch.Tensor:
    if x.is_contiguous():
        return x.view(-1)  # a view of the input in this branch
    return x.reshape(-1).clone()


@flat.register_fake
def _(x):
    return x.new_empty((x.numel(),))


class Layer(nn.Module):
    def __init__(self, hidden: int = 16):
        super().__init__()
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x):
        h = self.proj(x)
        return h + flat(h).view_as(h)


def make(tokens: int = 8):
    torch.manual_seed(0)
    return Layer(), (torch.randn(tokens, 16),)
