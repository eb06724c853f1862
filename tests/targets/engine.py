"""Targets where the engine's semantics (torch.compile(fullgraph=True) -> split -> capture) decide.

``# MARK:<name>`` marks the line the report must name. Each module is small and exactly computable.
"""

import copy
import functools
import logging
import warnings

import torch
import torch.nn as nn

log = logging.getLogger("pcg_engine")
CONTEXT = {"is_extend_in_batch": True}  # a per-batch context flag, read in forward (sglang PR 37190)
SPLIT_OPS = ["pcg_engine::split_sync"]


@torch.library.custom_op("pcg_engine::scale_by_max", mutates_args=())
def scale_by_max(x: torch.Tensor) -> torch.Tensor:
    peak = float(x.abs().max())  # MARK:kernel_sync
    return x / peak


@scale_by_max.register_fake
def _(x):
    return torch.empty_like(x)


@torch.library.custom_op("pcg_engine::split_sync", mutates_args=("out",))
def split_sync(x: torch.Tensor, out: torch.Tensor) -> None:
    out.copy_(x / float(x.abs().max()))  # a host sync inside a split op runs eagerly: fine


@split_sync.register_fake
def _(x, out):
    return None


@torch.library.custom_op("pcg_engine::store", mutates_args=("cache",))
def store(x: torch.Tensor, cache: torch.Tensor) -> None:
    cache[: x.shape[0]].copy_(x)


@torch.library.custom_op("pcg_engine::declared_unused", mutates_args=("scratch",))
def declared_unused(x: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    return x * 2  # never writes scratch


@declared_unused.register_fake
def _(x, scratch):
    return torch.empty_like(x)


@torch.library.custom_op("pcg_engine::unknown_mut", mutates_args="unknown")
def unknown_mut(x: torch.Tensor) -> torch.Tensor:
    return x + 1


@unknown_mut.register_fake
def _(x):
    return torch.empty_like(x)


@torch.library.custom_op("pcg_engine::fake_raises", mutates_args=())
def fake_raises(x: torch.Tensor) -> torch.Tensor:
    return x * 3


@fake_raises.register_fake
def _(x):
    raise NotImplementedError("fake impl not written yet")


@functools.lru_cache
def _probe_platform():
    # A cached platform probe for an optional package (sglang 39054): Dynamo ignores lru_cache.
    try:
        import pcg_engine_optional_kernels  # noqa: F401  # MARK:probe_import

        return 2
    except ImportError:
        return 1


class Case(nn.Module):
    """One behaviour per ``kind``; every case returns a tensor computed from ``x``."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.lin = nn.Linear(8, 8)
        self.register_buffer("cos_sin_cache", torch.ones(8))
        self.register_buffer("cache", torch.zeros(64, 8))

    def forward(self, x):
        y = self.lin(x)
        return getattr(self, "case_" + self.kind)(x, y)

    def example_inputs(self, tokens):
        return (torch.randn(tokens, 8),)

    def case_item_slice(self, x, y):
        n = int((x[:, 0] > 0).sum().item())  # MARK:item_slice
        return y[:n].sum(0) + y.sum(0)

    def case_nonzero(self, x, y):
        idx = torch.nonzero(x[:, 0] > 0)  # MARK:nonzero
        return y.sum(0) + idx.shape[0]

    def case_mask_index(self, x, y):
        return y[x[:, 0] > 0].sum(0)  # MARK:mask_index

    def case_repeat_interleave(self, x, y):
        reps = (x[:, 0] > 0).long() + 1
        return torch.repeat_interleave(y, reps, dim=0).sum(0)  # MARK:repeat_interleave

    def case_tolist(self, x, y):
        first = (x[0, :2] > 0).long().tolist()  # MARK:tolist
        return y * first[0]

    def case_kernel_sync(self, x, y):
        return scale_by_max(y)  # MARK:kernel_sync_call

    def case_split_sync(self, x, y):
        out = torch.empty_like(y)
        split_sync(y, out)
        return out + 1

    def case_print(self, x, y):
        print("tokens", x.shape[0])  # MARK:print
        return y

    def case_warn(self, x, y):
        warnings.warn("slow path")  # MARK:warn
        return y

    def case_log(self, x, y):
        log.info("tokens %d", 3)  # MARK:log
        return y

    def case_deepcopy(self, x, y):
        return copy.deepcopy(y) + 1  # MARK:deepcopy

    def case_sorted(self, x, y):
        return sorted([y, y * 2], key=lambda t: t.sum())[0]  # MARK:sorted

    def case_fake_raises(self, x, y):
        return fake_raises(y)  # MARK:fake_raises

    def case_wrong_shape(self, x, y):
        return y @ torch.ones(5, 8)  # MARK:wrong_shape

    def case_noret(self, x, y):
        store(y, self.cache)  # MARK:noret
        return y + 1

    def case_declared_unused(self, x, y):
        return declared_unused(y, torch.empty_like(y))  # MARK:declared_unused

    def case_unknown_mut(self, x, y):
        return unknown_mut(y)  # MARK:unknown_mut

    def case_buffer_assignment(self, x, y):
        self.cos_sin_cache = self.cos_sin_cache.to(y.dtype)  # MARK:buffer_assignment
        return y * self.cos_sin_cache

    def case_context_flag(self, x, y):
        if CONTEXT["is_extend_in_batch"]:  # MARK:context_flag
            return y * 2
        return y

    def case_data_ptr_arith(self, x, y):
        offset = (y.data_ptr() - x.data_ptr()) // 4  # MARK:data_ptr_arith
        z = y + offset
        n = int(z[:, 0].sum().item())  # MARK:after_abandon
        return z * n

    def case_probe(self, x, y):
        return y * _probe_platform()  # MARK:probe

    def case_device_query(self, x, y):
        return y * torch.get_num_threads()  # MARK:device_query


KINDS = [name[len("case_"):] for name in dir(Case) if name.startswith("case_")]


def _factory(kind):
    def make(tokens: int = 8):
        torch.manual_seed(0)
        return Case(kind), (torch.randn(tokens, 8),)

    make.__name__ = f"make_{kind}"
    return make


def _fixed(kind):
    def make():  # no tokens parameter: one call at its own inputs' size
        torch.manual_seed(0)
        return Case(kind), (torch.randn(6, 8),)

    return make


def _module_only(kind):
    def make():  # a bare module: inputs from example_inputs(tokens) at every size
        torch.manual_seed(0)
        return Case(kind)

    return make


for _kind in KINDS:
    globals()[f"make_{_kind}"] = _factory(_kind)
    globals()[f"fixed_{_kind}"] = _fixed(_kind)
    globals()[f"module_{_kind}"] = _module_only(_kind)


def make_fixed():
    """A fixed-input target (no tokens parameter) whose op has no fake kernel and mutates undeclared."""
    torch.manual_seed(0)
    return FixedInputs(), (torch.randn(6, 8),)


def make_module_only():
    """A bare module: inputs come from its example_inputs(tokens)."""
    torch.manual_seed(0)
    return FixedInputs()


_ext = torch.library.Library("pcg_engine_ext", "DEF")
_ext.define("double_into(Tensor x, Tensor y) -> Tensor")  # writes y, not declared


@torch.compiler.disable
def _double_into(x, y):
    y.copy_(x * 2)
    return x * 2


_ext.impl("double_into", _double_into, "CPU")


class FixedInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)

    def example_inputs(self, tokens):
        return (torch.randn(tokens, 8),)

    def forward(self, x):
        y = self.lin(x)
        z = torch.ops.pcg_engine_ext.double_into(y, torch.empty_like(y))  # MARK:fixed_op
        return z + 1
