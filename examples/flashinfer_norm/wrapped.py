"""The layer of ``unwrapped.py`` with flashinfer's RMSNorm wrapped as a custom op with a fake impl.

Dynamo records it as one node; the layer captures as one CUDA graph and replays equal to eager.
With sglang, ``register_custom_op(fake_impl=...)`` does the same.
"""

import torch
import torch.nn as nn

HIDDEN = 1024


@torch.library.custom_op("pcg_examples::flashinfer_rmsnorm", mutates_args=())
def flashinfer_rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    import flashinfer

    return flashinfer.norm.rmsnorm(x, weight, eps=eps)


@flashinfer_rmsnorm.register_fake
def _(x, weight, eps):
    return torch.empty_like(x)


class NormLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.Linear(HIDDEN, HIDDEN, bias=False)
        self.down = nn.Linear(HIDDEN, HIDDEN, bias=False)
        self.weight = nn.Parameter(torch.ones(HIDDEN))

    def forward(self, x):
        h = self.up(x)
        h = flashinfer_rmsnorm(h, self.weight, 1e-6)
        return x + self.down(h)


def make(tokens: int = 8, device: str = "cuda"):
    layer = NormLayer().to(device=device, dtype=torch.bfloat16)
    return layer, (torch.randn(tokens, HIDDEN, device=device, dtype=torch.bfloat16),)
