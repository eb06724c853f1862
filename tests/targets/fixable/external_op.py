import extops  # noqa: F401  a kernel package on the path (tests/fake_site): its op has no fake kernel
import torch
import torch.nn as nn


class Layer(nn.Module):
    def forward(self, x):
        return torch.ops.fixable_ext.double_rows(x) + 1


def make(tokens: int = 8):
    torch.manual_seed(0)
    return Layer(), (torch.randn(tokens, 8),)
