"""Benchmark targets: stacks of 1, 8 and 32 toy decoder layers with a registered split attention op."""

import torch
import torch.nn as nn

SPLIT_OPS = ["pcg_bench::attention"]
HIDDEN = 64


@torch.library.custom_op("pcg_bench::attention", mutates_args=("out",))
def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor) -> None:
    out.copy_(torch.softmax(q @ k.t() / q.shape[-1] ** 0.5, -1) @ v)


@attention.register_fake
def _(q, k, v, out):
    return None


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1, self.norm2 = nn.RMSNorm(HIDDEN), nn.RMSNorm(HIDDEN)
        self.qkv = nn.Linear(HIDDEN, 3 * HIDDEN, bias=False)
        self.o = nn.Linear(HIDDEN, HIDDEN, bias=False)
        self.up = nn.Linear(HIDDEN, 4 * HIDDEN, bias=False)
        self.down = nn.Linear(4 * HIDDEN, HIDDEN, bias=False)

    def forward(self, x):
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        out = torch.empty_like(q)
        attention(q, k, v, out)
        x = x + self.o(out)
        return x + self.down(torch.nn.functional.silu(self.up(self.norm2(x))))


class Stack(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.layers = nn.ModuleList(Layer() for _ in range(n))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def _make(n):
    def make(tokens: int = 8):
        return Stack(n), (torch.randn(tokens, HIDDEN),)

    return make


make_1, make_8, make_32 = _make(1), _make(8), _make(32)


# A shrunk real transformers Llama layer, stacked: the same module `pcg-inspect trace llama3-8b
# --layers 0-{n-1} --override ...` builds, so bench/bare.py can time bare Dynamo on it.
LLAMA_OVERRIDES = ("hidden_size=256", "intermediate_size=512", "num_attention_heads=4", "num_key_value_heads=2", "vocab_size=1000")


def _llama(n):
    def make(tokens: int = 8):
        from pcg_inspect.models import ModelOptions, make_factory

        factory, _ = make_factory("llama3-8b", ModelOptions(layers=f"0-{n - 1}", overrides=LLAMA_OVERRIDES))
        return factory(tokens=tokens)

    return make


llama_1, llama_8, llama_32 = _llama(1), _llama(8), _llama(32)
