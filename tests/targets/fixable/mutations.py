import torch
import torch.nn as nn


@torch.library.custom_op("fixable_mut::store", mutates_args=())
def store(x: torch.Tensor, cache: torch.Tensor) -> torch.Tensor:
    cache[: x.shape[0]].copy_(x)  # writes cache: not declared
    return x * 2


@store.register_fake
def _(x, cache):
    return torch.empty_like(x)


@torch.library.custom_op("fixable_mut::scale", mutates_args="unknown")
def scale(x: torch.Tensor) -> torch.Tensor:
    return x * 3


@scale.register_fake
def _(x):
    return torch.empty_like(x)


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("cache", torch.zeros(128, 8))

    def forward(self, x):
        return scale(store(x, self.cache)) + self.cache[: x.shape[0]]


def make(tokens: int = 8):
    torch.manual_seed(0)
    return Layer(), (torch.randn(tokens, 8),)
