import logging
import warnings

import torch
import torch.nn as nn

log = logging.getLogger("fixable")


class Chatty(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)

    def forward(self, x):
        print("tokens:", x.shape[0])
        y = self.lin(x)
        log.info("linear done")  # progress
        warnings.warn("slow path")
        return torch.relu(y)


def make(tokens: int = 8):
    torch.manual_seed(0)
    return Chatty(), (torch.randn(tokens, 8),)
