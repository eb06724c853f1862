import torch
import torch.nn as nn


class Rope(nn.Module):
    def forward(self, src, dst):
        rotated = src * 2
        if src.data_ptr() == dst.data_ptr():  # in-place use: keep a copy
            rotated = rotated.clone()
        return dst.copy_(rotated) + 1


def make(tokens: int = 8):
    torch.manual_seed(0)
    return Rope(), (torch.randn(tokens, 8), torch.randn(tokens, 8))
