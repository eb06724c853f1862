"""Toy targets, one per graph-break category. ``# BREAK:<category>`` marks the line the report must name."""

import logging

import torch
import torch.nn as nn

log = logging.getLogger("pcg_toy")

_lib = torch.library.Library("pcg_toy_ext", "DEF")
_lib.define("double(Tensor x) -> Tensor")


@torch.compiler.disable
def _double(x):
    return x * 2


_lib.impl("double", _double, "CPU")


@torch.library.custom_op("pcg_toy::nofake", mutates_args=())
def nofake(x: torch.Tensor) -> torch.Tensor:
    return x * 3


class Rope(nn.Module):
    def forward(self, src, dst):
        if src.data_ptr() == dst.data_ptr():  # BREAK:data_ptr
            return src + 1
        return src + dst


class DataPtr(nn.Module):
    def __init__(self):
        super().__init__()
        self.rope = Rope()
        self.lin = nn.Linear(8, 8)

    def forward(self, x):
        y = self.lin(x)
        return self.rope(y, y * 2)


class MissingFake(nn.Module):
    def forward(self, x):
        y = x + 1
        y = torch.ops.pcg_toy_ext.double(y)  # BREAK:missing_fake_impl
        return y - 1


class CustomOpNoFake(nn.Module):
    def forward(self, x):
        y = x + 1
        y = nofake(y)  # BREAK:custom_op_no_fake
        return y * 2


class DataDependent(nn.Module):
    def forward(self, x):
        y = x * 2
        if y.sum() > 0:  # BREAK:data_dependent
            y = y + 1
        return y


class SideEffect(nn.Module):
    def forward(self, x):
        y = x * 2
        log.warning("tokens=%d", 3)  # BREAK:side_effect
        return y + 1


def _jit_loader_lock():
    import threading

    return threading.Lock()  # BREAK:host_call


class Opaque(nn.Module):
    def forward(self, x):
        y = x * 2
        _jit_loader_lock()
        return y + 1


class Clean(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)

    def forward(self, x):
        return torch.relu(self.lin(x))


class Stepper(nn.Module):
    """Python state changed in forward: a guard on it fails every call."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.step = 0

    def forward(self, x):
        self.step += 1  # RECOMPILE:python_state_guard
        return self.lin(x) * self.step


def _factory(cls):
    def make(tokens: int = 8):
        return cls(), (torch.randn(tokens, 8),)

    return make


make_data_ptr = _factory(DataPtr)
make_missing_fake = _factory(MissingFake)
make_custom_op_no_fake = _factory(CustomOpNoFake)
make_data_dependent = _factory(DataDependent)
make_side_effect = _factory(SideEffect)
make_opaque = _factory(Opaque)
make_clean = _factory(Clean)
make_stepper = _factory(Stepper)


def make_all(tokens: int = 8):
    """Every category in one module, to show they are all reported in one run."""

    class All(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c, self.d = DataPtr(), MissingFake(), DataDependent(), SideEffect()

        def forward(self, x):
            return self.d(self.c(self.b(self.a(x))))

    return All(), (torch.randn(tokens, 8),)


def make_raises(tokens: int = 8):
    raise ValueError("no weights for layer 3")


def make_wrong_type(tokens: int = 8):
    return 42


def make_module_only():
    return Clean()


def make_not_module_tuple():
    return ("a", "b")
