"""A script with a required argument, imported as a target: argparse prints its usage and exits 2."""
import argparse

import torch

parser = argparse.ArgumentParser()
parser.add_argument("--checkpoint", required=True)
ARGS = parser.parse_args()  # MARK:parse_args


def make(tokens: int = 8):
    return torch.nn.Linear(8, 8), (torch.randn(tokens, 8),)
