"""What sglang's breakable and full backends need beyond capture-safe ops (tests/test_backends.py)."""

import torch
import torch.nn as nn

BREAK_OPS = ["pcgk::mix"]


@torch.library.custom_op("pcgk::mix", mutates_args=())
def mix(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    return x * table[: x.shape[-1]]


@mix.register_fake
def _(x, table):
    return torch.empty_like(x)


class ForeignTensor(nn.Module):
    """A break fed one of two ping-pong tables picked per call (a plain list, not buffers): not an input, a weight
    or an allocation of the forward, and another tensor on each call. breakable's closure keeps the capture-time one."""

    def __init__(self, h: int = 16, device: str = "cpu"):
        super().__init__()
        self.proj = nn.Linear(h, h)
        self.step = 0
        self.tables = [torch.ones(h, device=device), torch.full((h,), 2.0, device=device)]

    def forward(self, x):
        self.step += 1
        table = self.tables[self.step % 2]
        return mix(self.proj(x), table)  # MARK:foreign_call


class StaticStep(nn.Module):
    """The same break reading a buffer the runner updates in place: nothing is stale."""

    def __init__(self, h: int = 16):
        super().__init__()
        self.proj = nn.Linear(h, h)
        self.register_buffer("table", torch.ones(h))

    def forward(self, x):
        return mix(self.proj(x), self.table)


class Structure(nn.Module):
    """Returns a pair at one size and a tensor at another: no shared output buffer fits both."""

    def __init__(self, h: int = 12):
        super().__init__()
        self.proj = nn.Linear(h, h)

    def forward(self, x):
        h = self.proj(x)
        if x.shape[0] > 8:  # MARK:structure
            return h, h.sum(-1)
        return h


def make_foreign_tensor(tokens: int = 8, device: str = "cpu"):
    torch.manual_seed(0)
    return ForeignTensor(device=device).to(device), (torch.randn(tokens, 16, device=device),)


def make_static_step(tokens: int = 8, device: str = "cpu"):
    torch.manual_seed(0)
    return StaticStep().to(device), (torch.randn(tokens, 16, device=device),)


def make_structure(tokens: int = 8, device: str = "cpu"):
    torch.manual_seed(0)
    return Structure().to(device), (torch.randn(tokens, 12, device=device),)
