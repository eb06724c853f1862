import torch


def make(tokens: int = 8):
    return torch.nn.Linear(8, 8), (torch.randn(tokens, 8),)


def broken(:  # MARK:syntax
    pass
