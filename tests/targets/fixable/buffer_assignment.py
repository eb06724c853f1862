import torch
import torch.nn as nn


class Rotary(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("cos_sin_cache", torch.linspace(0, 1, 8))

    def forward(self, x):
        self.cos_sin_cache = self.cos_sin_cache.to(x.dtype)
        return x * self.cos_sin_cache + self.cos_sin_cache.sum()


def make(tokens: int = 8):
    torch.manual_seed(0)
    return Rotary(), (torch.randn(tokens, 8),)
