"""One real module per op finding kind. ``# FIND:<kind>`` marks the line the report must name."""

import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fake_site"))
import jitlib  # noqa: E402  a library on sys.path, as flashinfer would be

# --- an extension op without a fake kernel (its output is [T, k]) -------------------------------
_ext = torch.library.Library("pcg_find_ext", "DEF")
_ext.define("head_rows(Tensor x, int k) -> Tensor")
_ext.define("store_into(Tensor k, Tensor cache) -> ()")  # writes cache, not declared (no (a!))
_ext.define("flat_view(Tensor x) -> Tensor")  # returns a view of its input


@torch.compiler.disable
def _head_rows(x, k):
    return x[:, :k] * 2


@torch.compiler.disable
def _store_into(k, cache):
    cache[: k.shape[0]] = k


@torch.compiler.disable
def _flat_view(x):
    return x.view(-1)


_ext.impl("head_rows", _head_rows, "CPU")
_ext.impl("store_into", _store_into, "CPU")
_ext.impl("flat_view", _flat_view, "CPU")


@torch.library.register_fake("pcg_find_ext::store_into")
def _(k, cache):
    return None


@torch.library.register_fake("pcg_find_ext::flat_view")
def _(x):
    return x.new_empty((x.numel(),))


# --- a custom op whose fake impl lies ------------------------------------------------------------
@torch.library.custom_op("pcg_find::top16", mutates_args=())
def top16(scores: torch.Tensor) -> torch.Tensor:
    return torch.topk(scores, 16, dim=-1).indices


@top16.register_fake
def _(scores):
    return scores.new_empty((scores.shape[0], 8), dtype=torch.int64)  # the kernel returns 16 columns


class Unregistered(nn.Module):
    def forward(self, x):
        y = torch.ops.pcg_find_ext.head_rows(x, 4)  # FIND:unregistered_op
        return y + 1


class LyingFake(nn.Module):
    def forward(self, x):
        idx = top16(x * 2)  # FIND:fake_impl_mismatch
        return idx.float().sum(-1)


class UndeclaredMutation(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("cache", torch.zeros(64, 8))

    def forward(self, x):
        torch.ops.pcg_find_ext.store_into(x, self.cache)  # FIND:undeclared_mutation
        return x * 2


class Aliasing(nn.Module):
    def forward(self, x):
        flat = torch.ops.pcg_find_ext.flat_view(x)  # FIND:output_aliases_input
        return flat * 3


class LibraryCall(nn.Module):
    def forward(self, x):
        y = jitlib.fused_scale(x, scale=2.0)  # FIND:opaque_library_call
        return y + 1


class UnreachedDataPtr(nn.Module):
    def __init__(self):
        super().__init__()
        self.debug = False

    def forward(self, x, y):
        if self.debug and x.data_ptr() == y.data_ptr():  # FIND:data_ptr_unreached
            return x
        return x + y


def _make(cls, n_inputs=1):
    def make(tokens: int = 8):
        return cls(), tuple(torch.randn(tokens, 8) for _ in range(n_inputs))

    return make


make_unregistered = _make(Unregistered)
def make_lying_fake(tokens: int = 8):
    return LyingFake(), (torch.randn(tokens, 32),)
make_undeclared_mutation = _make(UndeclaredMutation)
make_aliasing = _make(Aliasing)
make_unreached_data_ptr = _make(UnreachedDataPtr, 2)
make_library_call = _make(LibraryCall)


# --- the same modules as fixed-input targets (no tokens parameter) and as bare modules ----------
def _fixed(cls, cols=8, n_inputs=1):
    def make():
        return cls(), tuple(torch.randn(6, cols) for _ in range(n_inputs))

    return make


def _module_only(cls, cols=8):
    def make():
        m = cls()
        m.example_inputs = lambda tokens: (torch.randn(tokens, cols),)
        return m

    return make


fixed_unregistered, module_unregistered = _fixed(Unregistered), _module_only(Unregistered)
fixed_lying_fake, module_lying_fake = _fixed(LyingFake, 32), _module_only(LyingFake, 32)
fixed_undeclared_mutation, module_undeclared_mutation = _fixed(UndeclaredMutation), _module_only(UndeclaredMutation)
fixed_aliasing, module_aliasing = _fixed(Aliasing), _module_only(Aliasing)
