import torch
import torch.nn as nn


@torch.library.custom_op("fixable_lf::top4", mutates_args=())
def top4(scores: torch.Tensor) -> torch.Tensor:
    return torch.topk(scores, 4, dim=-1).indices


@top4.register_fake
def _(scores):
    return scores.new_empty((scores.shape[0], 2), dtype=torch.int64)  # the kernel returns 4 columns


class Layer(nn.Module):
    def forward(self, x):
        return top4(x * 2).float().sum(-1)


def make(tokens: int = 8):
    torch.manual_seed(0)
    return Layer(), (torch.randn(tokens, 16),)
