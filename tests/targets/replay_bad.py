"""Targets whose pieces go wrong at replay, each at a known piece index.

Layout of every target: [0] captured linear, [1] split attention (writes into a buffer piece 0
allocated), [2] captured piece with the problem.
"""

import torch
import torch.nn as nn

SPLIT_OPS = ["pcg_bad::attention", "pcg_bad::fresh_attention"]
STATE = {"calls": 0}


@torch.library.custom_op("pcg_bad::attention", mutates_args=("out",))
def attention(x: torch.Tensor, out: torch.Tensor) -> None:
    out.copy_(x.softmax(-1))


@attention.register_fake
def _(x, out):
    return None


@torch.library.custom_op("pcg_bad::fresh_attention", mutates_args=())
def fresh_attention(x: torch.Tensor) -> torch.Tensor:
    return x.softmax(-1)


@fresh_attention.register_fake
def _(x):
    return torch.empty_like(x)


@torch.library.custom_op("pcg_bad::host_sync_scale", mutates_args=())
def host_sync_scale(x: torch.Tensor) -> torch.Tensor:
    scale = float(x.abs().max())  # MARK:host_sync_kernel  a host sync: forbidden inside CUDA graph capture
    return x / scale


@host_sync_scale.register_fake
def _(x):
    return torch.empty_like(x)


@torch.library.custom_op("pcg_bad::stepped", mutates_args=())
def stepped(x: torch.Tensor) -> torch.Tensor:
    STATE["calls"] += 1  # Python state read at run time: baked into a captured graph
    return x * float(STATE["calls"])


@stepped.register_fake
def _(x):
    return torch.empty_like(x)


class Bad(nn.Module):
    def __init__(self, op):
        super().__init__()
        self.lin = nn.Linear(16, 16)
        self.out = nn.Linear(16, 16)
        self.op = op

    def forward(self, x):
        h = self.lin(x)
        y = torch.empty_like(h)
        attention(h, y)
        return self.out(self.op(y + 1))  # MARK:op_call


class FreshOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(16, 16)
        self.out = nn.Linear(16, 16)

    def forward(self, x):
        y = fresh_attention(self.lin(x))  # MARK:fresh_output
        return self.out(y + 1)


def make_host_sync(tokens: int = 8, device: str = "cpu"):
    return Bad(host_sync_scale).to(device), (torch.randn(tokens, 16, device=device),)


def make_baked(tokens: int = 8, device: str = "cpu"):
    return Bad(stepped).to(device), (torch.randn(tokens, 16, device=device),)


def make_good(tokens: int = 8, device: str = "cpu"):
    return Bad(torch.relu).to(device), (torch.randn(tokens, 16, device=device),)


def make_fresh_output(tokens: int = 8, device: str = "cpu"):
    return FreshOutput().to(device), (torch.randn(tokens, 16, device=device),)


@torch.library.custom_op("pcg_bad::crash_on_replay", mutates_args=())
def crash_on_replay(x: torch.Tensor) -> torch.Tensor:
    if x.is_cuda and torch.cuda.is_current_stream_capturing():
        # Captured into the graph: out of bounds, so replaying it is a device-side assert that
        # poisons the CUDA context (eager runs, warm-up included, stay in bounds).
        bad = torch.full((x.shape[0],), 1 << 30, device=x.device, dtype=torch.long)
        return x.index_select(0, bad)
    return x.clone()


@crash_on_replay.register_fake
def _(x):
    return torch.empty_like(x)


def make_device_assert(tokens: int = 8, device: str = "cpu"):
    return Bad(crash_on_replay).to(device), (torch.randn(tokens, 16, device=device),)
