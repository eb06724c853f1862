import functools

import torch
import torch.nn as nn


@functools.lru_cache
def has_fast_kernels():
    try:
        import fixable_fast_kernels  # noqa: F401  an optional package
        return True
    except ImportError:
        return False


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)

    def forward(self, x):
        y = self.lin(x)
        if has_fast_kernels():
            y = y * 2
        return y * torch.get_num_threads()


def make(tokens: int = 8):
    torch.manual_seed(0)
    return Layer(), (torch.randn(tokens, 8),)
