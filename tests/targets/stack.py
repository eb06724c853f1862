"""A 3-layer stack whose attention is a registered custom op (vLLM's silly_attention idea).

The op counts its calls, so tests can check that a split piece really ran.
"""

import torch
import torch.nn as nn

CALLS = {"attention": 0}
SPLIT_OPS = ["pcg_stack::attention"]


@torch.library.custom_op("pcg_stack::attention", mutates_args=("out",))
def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor) -> None:
    CALLS["attention"] += 1
    out.copy_(q + k * v)  # exactly computable stand-in for attention


@attention.register_fake
def _(q, k, v, out):
    return None


class Layer(nn.Module):
    def __init__(self, h: int = 16):
        super().__init__()
        self.qkv = nn.Linear(h, 3 * h, bias=False)
        self.o = nn.Linear(h, h, bias=False)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        out = torch.empty_like(q)
        attention(q, k, v, out)
        return x + self.o(out)


class Stack(nn.Module):
    def __init__(self, n: int = 3, h: int = 16):
        super().__init__()
        self.layers = nn.ModuleList(Layer(h) for _ in range(n))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def make(tokens: int = 8, layers: int = 3):
    return Stack(layers), (torch.randn(tokens, 16),)
