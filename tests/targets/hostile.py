"""Targets that misbehave the way real code does: they hang, exit, print markup, crash in a piece."""

import sys
import time

import torch
import torch.nn as nn


class Sleeper(nn.Module):
    def forward(self, x):
        time.sleep(3600)  # MARK:sleep
        return x


class Spinner(nn.Module):
    def forward(self, x):
        while x.shape[0] > 0:  # MARK:spin  never false: Dynamo unrolls it forever, eager spins forever
            x = x + 1
        return x


class Swallower(nn.Module):
    def forward(self, x):
        try:
            time.sleep(3600)
        except BaseException:  # swallows the timeout once, as careless cleanup code does
            pass
        time.sleep(3600)  # MARK:swallowed
        return x


class Exits(nn.Module):
    def forward(self, x):
        sys.exit(0)  # MARK:exit_forward


class Markup(nn.Module):
    def forward(self, x):
        raise FileNotFoundError("no checkpoint at [/data/ckpt] for [models] [bold]x[/bold]")  # MARK:markup


class OutOfBounds(nn.Module):
    def forward(self, x):
        idx = torch.full((x.shape[0], 4), 1 << 20, dtype=torch.long)
        return torch.gather(x, 1, idx)  # MARK:gather


class Printer(nn.Module):
    def forward(self, x):
        print("[target output] tokens", x.shape[0])
        return x * 2


def _make(cls):
    def make(tokens: int = 8):
        return cls(), (torch.randn(tokens, 8),)

    return make


make_sleep = _make(Sleeper)
make_spin = _make(Spinner)
make_swallow = _make(Swallower)
make_exit_forward = _make(Exits)
make_markup = _make(Markup)
make_out_of_bounds = _make(OutOfBounds)
make_printer = _make(Printer)


def make_exit_factory(tokens: int = 8):
    sys.exit(3)  # MARK:exit_factory


def make_raises_markup(tokens: int = 8):
    raise FileNotFoundError("no checkpoint at [/data/ckpt]")  # MARK:raises_markup
