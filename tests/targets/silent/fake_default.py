"""An op whose schema has a default (k=2) that its fake impl's signature drops: calls that omit k fail under
fullgraph=True, though eager runs."""

import torch
import torch.nn as nn


@torch.library.custom_op("pcgs::topk_rows", mutates_args=())
def topk_rows(x: torch.Tensor, k: int = 2) -> torch.Tensor:
    return x.topk(k, dim=-1).values


@topk_rows.register_fake
def _(x, k):  # drops the default
    return x.new_empty((x.shape[0], k))


class Layer(nn.Module):
    def __init__(self, hidden: int = 16):
        super().__init__()
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x):
        return topk_rows(self.proj(x)).sum(-1, keepdim=True) * x  # omits k


def make(tokens: int = 8):
    torch.manual_seed(0)
    return Layer(), (torch.randn(tokens, 16),)
