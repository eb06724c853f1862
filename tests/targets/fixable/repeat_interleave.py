"""An MoE router that lists the expert of every (token, slot) pair with repeat_interleave over per-expert counts.

Every token picks TOP_K experts, so the counts add up to topk_ids.numel() by construction: output_size=
can say so, and the host never reads the counts."""

import torch
import torch.nn as nn

NUM_EXPERTS, TOP_K = 8, 2


class Router(nn.Module):
    def __init__(self):
        super().__init__()
        self.gate = nn.Linear(16, NUM_EXPERTS)
        self.top_k = TOP_K

    def forward(self, x):
        weights, topk_ids = self.gate(x).softmax(-1).topk(self.top_k, dim=-1)
        flat = topk_ids.flatten()
        counts = torch.zeros(NUM_EXPERTS, dtype=torch.long, device=x.device).scatter_add_(0, flat, torch.ones_like(flat))
        expert_of_slot = torch.repeat_interleave(torch.arange(NUM_EXPERTS, device=x.device), counts)
        order = flat.argsort(stable=True)
        slot_weight = weights.flatten()[order] * (expert_of_slot + 1).to(x.dtype)
        return x * slot_weight.view(-1, self.top_k).sum(-1, keepdim=True)


def make(tokens: int = 8):
    torch.manual_seed(0)
    return Router(), (torch.randn(tokens, 16),)
