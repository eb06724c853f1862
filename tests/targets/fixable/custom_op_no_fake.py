import torch
import torch.nn as nn


@torch.library.custom_op("fixable_co::scale", mutates_args=())
def scale(x: torch.Tensor, k: int) -> torch.Tensor:
    return x[:, :k] * 3


class Layer(nn.Module):
    def forward(self, x):
        return scale(x + 1, 4) - 1


def make(tokens: int = 8):
    torch.manual_seed(0)
    return Layer(), (torch.randn(tokens, 8),)
