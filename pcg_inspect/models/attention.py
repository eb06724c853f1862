"""``pcg_inspect::attention``: a registered split op that transformers' attention is routed through.

Registered on first import (models only). It writes into an output buffer allocated before it
(vLLM's "with output" pattern), so captured pieces read stable addresses. Causal, sliding window,
GQA and attention sinks (gpt-oss) are honoured so eager results equal the model's own attention
for one prefill sequence without padding.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

SPLIT_OP = "pcg_inspect::attention"
INTERFACE_NAME = "pcg_split"


@torch.library.custom_op(SPLIT_OP, mutates_args=("out",))
def attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    out: torch.Tensor,
    scale: float,
    sliding_window: int,
    sinks: Optional[torch.Tensor],
) -> None:
    # query [B, H, T, D], key/value [B, Hkv, T, D(v)]; out [B, T, H, Dv]
    heads, kv_heads = query.shape[1], key.shape[1]
    if kv_heads != heads:
        key = key.repeat_interleave(heads // kv_heads, dim=1)
        value = value.repeat_interleave(heads // kv_heads, dim=1)
    scores = torch.matmul(query.float(), key.float().transpose(-1, -2)) * scale
    t_q, t_k = scores.shape[-2], scores.shape[-1]
    i = torch.arange(t_q, device=query.device).unsqueeze(1) + (t_k - t_q)
    j = torch.arange(t_k, device=query.device).unsqueeze(0)
    allowed = j <= i
    if sliding_window > 0:
        allowed = allowed & (i - j < sliding_window)
    scores = scores.masked_fill(~allowed, float("-inf"))
    if sinks is not None:  # gpt-oss: a learned logit per head that takes part in the softmax
        sink = sinks.float().reshape(1, -1, 1, 1).expand(scores.shape[0], -1, t_q, 1)
        probs = torch.cat([scores, sink], dim=-1).softmax(-1)[..., :-1]
    else:
        probs = scores.softmax(-1)
    result = torch.matmul(probs, value.float()).transpose(1, 2)
    out.copy_(result.to(out.dtype))


@attention.register_fake
def _(query, key, value, out, scale, sliding_window, sinks):
    return None


def split_attention_forward(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Optional[torch.Tensor],
    dropout: float = 0.0,
    scaling: Optional[float] = None,
    sliding_window: Optional[int] = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers AttentionInterface function: allocate the output, call the split op."""
    out = query.new_empty((query.shape[0], query.shape[2], query.shape[1], value.shape[-1]))
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    window = sliding_window if sliding_window is not None else (getattr(module, "sliding_window", None) or 0)
    sinks = getattr(module, "sinks", None)
    attention(query, key, value, out, float(scale), int(window or 0), sinks)
    return out, None


def register() -> str:
    """Register the interface with transformers (idempotent); returns its name."""
    from transformers import AttentionInterface

    AttentionInterface.register(INTERFACE_NAME, split_attention_forward)
    return INTERFACE_NAME
