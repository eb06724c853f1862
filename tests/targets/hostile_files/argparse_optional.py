"""Parses the command line at import, as many model scripts do: with our own arguments it must not fail."""
import argparse

import torch

parser = argparse.ArgumentParser()
parser.add_argument("--hidden", type=int, default=8)
ARGS = parser.parse_args()


def make(tokens: int = 8):
    return torch.nn.Linear(ARGS.hidden, ARGS.hidden), (torch.randn(tokens, ARGS.hidden),)
