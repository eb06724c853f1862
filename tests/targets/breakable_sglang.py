"""Break points declared with sglang 0.5.23's own @eager_on_graph (tests/test_backends.py, tests/gpu)."""

import torch
import torch.nn as nn
from sglang.srt.model_executor.runner_backend_utils.breakable_cuda_graph import eager_on_graph


@eager_on_graph
def longest(q, lens):
    n = int(lens.max())  # MARK:eog_sync
    return q * n


@eager_on_graph
def count(x):
    return int((x > 0).sum())


class Sync(nn.Module):
    """A host read inside an @eager_on_graph function: eager under breakable, captured under full."""

    def __init__(self, h: int = 16):
        super().__init__()
        self.proj = nn.Linear(h, h)
        self.register_buffer("lens", torch.tensor([4]))

    def forward(self, x):
        return longest(self.proj(x), self.lens)


class Count(nn.Module):
    """A Python value returned by a break point, used by the rest of the forward."""

    def __init__(self, h: int = 16):
        super().__init__()
        self.proj = nn.Linear(h, h)

    def forward(self, x):
        h = self.proj(x)
        n = count(h)  # MARK:count_call
        return h * n


class Stale(nn.Module):
    """A method decorated with @eager_on_graph, fed a per-call counter."""

    def __init__(self, h: int = 16):
        super().__init__()
        self.proj = nn.Linear(h, h)
        self.step = 0

    @eager_on_graph
    def scaled(self, x, step):
        return x * (1.0 + 0.1 * (step % 5))

    def forward(self, x):
        self.step += 1
        return self.scaled(self.proj(x), self.step)  # MARK:stale_call


def make_sync(tokens: int = 8, device: str = "cpu"):
    torch.manual_seed(0)
    return Sync().to(device), (torch.randn(tokens, 16, device=device),)


def make_count(tokens: int = 8, device: str = "cpu"):
    torch.manual_seed(0)
    return Count().to(device), (torch.randn(tokens, 16, device=device),)


def make_stale(tokens: int = 8, device: str = "cpu"):
    torch.manual_seed(0)
    return Stale().to(device), (torch.randn(tokens, 16, device=device),)
