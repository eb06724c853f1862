"""A layer calling flashinfer's RMSNorm directly inside forward (needs a GPU and flashinfer).

Under torch.compile Dynamo follows ``flashinfer.norm.rmsnorm`` into flashinfer's JIT loader and
stops at a file-system call it cannot trace: the real version of the bug sglang PR 23351 fixed.
``pcg-inspect trace examples/flashinfer_norm/unwrapped.py:make --device cuda`` reports it at the
call below; ``wrapped.py`` is the fix.
"""

import torch
import torch.nn as nn

HIDDEN = 1024


class NormLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.Linear(HIDDEN, HIDDEN, bias=False)
        self.down = nn.Linear(HIDDEN, HIDDEN, bias=False)
        self.weight = nn.Parameter(torch.ones(HIDDEN))

    def forward(self, x):
        import flashinfer

        h = self.up(x)
        h = flashinfer.norm.rmsnorm(h, self.weight, eps=1e-6)
        return x + self.down(h)


def make(tokens: int = 8, device: str = "cuda"):
    layer = NormLayer().to(device=device, dtype=torch.bfloat16)
    return layer, (torch.randn(tokens, HIDDEN, device=device, dtype=torch.bfloat16),)
