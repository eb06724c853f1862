"""A tensor-parallel attention + MLP layer (Megatron style), for ``pcg-inspect trace --nproc N``.

Column-parallel q/k/v and up projections, row-parallel o and down projections, each followed by
an in-place all-reduce registered as a custom op and a split op, as sglang registers
``inplace_all_reduce``. Every rank builds the full weights from one seed and keeps its shard, so
the TP result equals the single-rank layer (``world_size=1``).

``make_divergent``: rank 1 takes another activation branch (a config read differently on one
rank), the kind of difference that hangs or corrupts a real TP server.
"""

import torch
import torch.distributed as dist
import torch.nn as nn

HIDDEN, HEADS, FFN = 64, 4, 128
SPLIT_OPS = ["tp_example::all_reduce"]


@torch.library.custom_op("tp_example::all_reduce", mutates_args=("x",))
def all_reduce(x: torch.Tensor) -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(x)


@all_reduce.register_fake
def _(x):
    return None


class TPLayer(nn.Module):
    def __init__(self, rank: int, world_size: int, activation: str = "silu"):
        super().__init__()
        assert HEADS % world_size == 0 and FFN % world_size == 0
        torch.manual_seed(0)
        full = {
            "qkv": torch.randn(3 * HIDDEN, HIDDEN) * 0.05,
            "o": torch.randn(HIDDEN, HIDDEN) * 0.05,
            "up": torch.randn(FFN, HIDDEN) * 0.05,
            "down": torch.randn(HIDDEN, FFN) * 0.05,
        }
        h, f = HIDDEN // world_size, FFN // world_size
        q, k, v = full["qkv"].chunk(3)
        cols = slice(rank * h, (rank + 1) * h)
        self.qkv = nn.Parameter(torch.cat([q[cols], k[cols], v[cols]]))  # column parallel
        self.o = nn.Parameter(full["o"][:, cols].contiguous())  # row parallel
        self.up = nn.Parameter(full["up"][rank * f:(rank + 1) * f].contiguous())  # column parallel
        self.down = nn.Parameter(full["down"][:, rank * f:(rank + 1) * f].contiguous())  # row parallel
        self.heads = HEADS // world_size
        self.activation = activation

    def forward(self, x):
        t = x.shape[0]
        q, k, v = (x @ self.qkv.t()).chunk(3, dim=-1)
        q, k, v = (z.view(t, self.heads, -1).transpose(0, 1) for z in (q, k, v))
        attn = torch.softmax(q @ k.transpose(1, 2) / q.shape[-1] ** 0.5, dim=-1) @ v
        o = attn.transpose(0, 1).reshape(t, -1) @ self.o.t()
        all_reduce(o)
        x = x + o
        h = x @ self.up.t()
        h = torch.nn.functional.gelu(h) if self.activation == "gelu" else torch.nn.functional.silu(h)
        d = h @ self.down.t()
        all_reduce(d)
        return x + d


def make(tokens: int = 8, rank: int = 0, world_size: int = 1):
    torch.manual_seed(1)
    return TPLayer(rank, world_size), (torch.randn(tokens, HIDDEN),)


def make_divergent(tokens: int = 8, rank: int = 0, world_size: int = 1):
    torch.manual_seed(1)
    return TPLayer(rank, world_size, activation="gelu" if rank == 1 else "silu"), (torch.randn(tokens, HIDDEN),)
