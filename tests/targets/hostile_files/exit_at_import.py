"""sys.exit at import: a script that was never meant to be imported."""
import sys

import torch

sys.exit(0)  # MARK:exit_import


def make(tokens: int = 8):
    return torch.nn.Linear(8, 8), (torch.randn(tokens, 8),)
