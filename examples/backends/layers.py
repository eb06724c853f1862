"""Layers whose verdict depends on sglang 0.5.23's capture backend (tc_piecewise, breakable, full).

    pcg-inspect trace examples/backends/layers.py:make_split_sync --backend all   # tc_piecewise ✓ breakable ✓ full ✗
    pcg-inspect trace examples/backends/layers.py:make_dynamo_only --backend all  # tc_piecewise ✗ breakable ✓ full ✓
    pcg-inspect trace examples/backends/layers.py:make_stale_break --backend breakable --device cuda
        # captures, then replays the capture-time Python value: replay_mismatch, cause stale_break_arg
"""

import torch
import torch.nn as nn

SPLIT_OPS = ["pcgb::attention", "pcgb::scaled"]


@torch.library.custom_op("pcgb::attention", mutates_args=("out",))
def attention(q: torch.Tensor, k: torch.Tensor, lens: torch.Tensor, out: torch.Tensor) -> None:
    n = int(lens.max())  # MARK:split_sync a host read inside the split op's kernel
    out.copy_(torch.softmax(q @ k[:n].t(), -1) @ k[:n])


class SplitSync(nn.Module):
    """A host read inside an attention-like split op: eager between pieces (tc_piecewise) and segments (breakable),
    captured under full."""

    def __init__(self, h: int = 16):
        super().__init__()
        self.qk = nn.Linear(h, 2 * h)
        self.register_buffer("lens", torch.tensor([4]))

    def forward(self, x):
        q, k = self.qk(x).chunk(2, dim=-1)
        out = torch.empty_like(q)  # the split op writes into a buffer of the captured piece, as attention does
        attention(q, k, self.lens, out)  # MARK:split_call
        return x + out


class DynamoOnly(nn.Module):
    """A print in forward: a Dynamo graph break (tc_piecewise), nothing a plain CUDA-graph capture minds."""

    def __init__(self, h: int = 16):
        super().__init__()
        self.proj = nn.Linear(h, h)

    def forward(self, x):
        print("tokens", x.shape[0])  # MARK:dynamo_only
        return self.proj(x).relu()


@torch.library.custom_op("pcgb::scaled", mutates_args=())
def scaled(x: torch.Tensor, step: int) -> torch.Tensor:
    return x * (1.0 + 0.1 * (step % 5))


@scaled.register_fake
def _(x, step):
    return torch.empty_like(x)


class StaleBreak(nn.Module):
    """A break (split op) fed a per-call Python value: breakable replays the capture-time value."""

    def __init__(self, h: int = 16):
        super().__init__()
        self.proj = nn.Linear(h, h)
        self.step = 0

    def forward(self, x):
        self.step += 1
        return scaled(self.proj(x), self.step)  # MARK:stale_break


def make_split_sync(tokens: int = 8):
    torch.manual_seed(0)
    return SplitSync(), (torch.randn(tokens, 16),)


def make_dynamo_only(tokens: int = 8):
    torch.manual_seed(0)
    return DynamoOnly(), (torch.randn(tokens, 16),)


def make_stale_break(tokens: int = 8):
    torch.manual_seed(0)
    return StaleBreak(), (torch.randn(tokens, 16),)
