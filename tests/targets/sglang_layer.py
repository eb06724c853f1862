"""A layer whose attention is an sglang custom op registered the sglang way (needs sglang importable).

``register_custom_op`` puts it under ``torch.ops.sglang`` and ``@register_split_op()`` adds
``sglang.pcg_test_attention`` to sglang's SPLIT_OPS, which pcg-inspect reads by default.
"""

import torch
import torch.nn as nn
from sglang.srt.compilation.compilation_config import register_split_op
from sglang.srt.utils.custom_op import register_custom_op


def _attention_cpu(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor) -> None:
    out.copy_(torch.softmax(q @ k.t(), -1) @ v)


@register_split_op()
@register_custom_op(mutates_args=["out"])
def pcg_test_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor) -> None:
    out.copy_(torch.softmax(q @ k.t(), -1) @ v)


# register_custom_op registers a CUDA kernel only: eager CPU calls in tests need a CPU one too.
torch.library.impl("sglang::pcg_test_attention", "CPU")(_attention_cpu)


class Layer(nn.Module):
    def __init__(self, h: int = 32):
        super().__init__()
        self.qkv = nn.Linear(h, 3 * h, bias=False)
        self.o = nn.Linear(h, h, bias=False)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        out = torch.empty_like(q)
        torch.ops.sglang.pcg_test_attention(q, k, v, out)
        return x + self.o(out)


def make(tokens: int = 8):
    return nn.Sequential(Layer(), Layer()), (torch.randn(tokens, 32),)
