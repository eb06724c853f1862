"""Layers whose verdict depends on sglang 0.5.23's capture backend (tc_piecewise, breakable, full).

    pcg-inspect trace examples/backends/layers.py:make_split_sync --backend all   # tc_piecewise ✓ breakable ✓ full ✗
    pcg-inspect trace examples/backends/layers.py:make_dynamo_only               # tc_piecewise ✗ breakable ✓ (the default)
    pcg-inspect trace examples/backends/layers.py:make_stale_break --backend breakable
        # stale_break_arg: breakable would replay the capture-time Python value (on a GPU: captured, then wrong)
    pcg-inspect trace examples/backends/layers.py:make_side_stream --backend all --device cuda
        # work forked onto a side stream and never joined: breakable joins it (as sglang does), full fails capture

In the engine, attention runs inside ``RadixAttention.forward``, an ``@eager_on_graph`` function: a break point of
the breakable backend. These layers call their ops directly (no sglang needed), so they name them in ``BREAK_OPS``.
A split op that is not a break point is captured by breakable (sglang captures ``inplace_all_reduce``, for one).
"""

import torch
import torch.nn as nn

SPLIT_OPS = ["pcgb::attention", "pcgb::scaled"]
BREAK_OPS = ["pcgb::attention", "pcgb::scaled"]  # called from @eager_on_graph functions in the engine


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
    """A break point fed a per-call Python value: breakable replays the capture-time value."""

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


class SideStream(nn.Module):
    """Bookkeeping forked onto a side stream and never joined back (its result is read by the runner later, not by
    this forward): sglang's breakable joins a forked stream before each segment ends, so it captures and replays
    right; full's one graph fails capture on the unjoined work. (On the CPU there is no stream to fork.)"""

    def __init__(self, h: int = 16, side=None):
        super().__init__()
        self.proj = nn.Linear(h, h)
        self.register_buffer("stats", torch.zeros(h))
        self.side = side  # made once, outside forward, as an engine makes its alternate stream

    def forward(self, x):
        h = self.proj(x)
        if self.side is not None:
            self.side.wait_stream(torch.cuda.current_stream())  # MARK:side_stream fork, and no join
            with torch.cuda.stream(self.side):
                self.stats.copy_(h.detach().abs().amax(0))
        return h * 2


def make_side_stream(tokens: int = 8, device: str = "cpu"):
    torch.manual_seed(0)
    side = torch.cuda.Stream(device=device) if str(device).startswith("cuda") else None
    return SideStream(side=side).to(device), (torch.randn(tokens, 16, device=device),)
