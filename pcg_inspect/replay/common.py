"""What the CPU and GPU replays share: inputs, fresh values, comparisons, node-by-node runners."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence
from unittest import mock

from .. import _torch_compat as compat

RMSE_MULTIPLIER = 3.0  # torch's accuracy minifier uses a small multiple of eager's error


@dataclass
class ReplayInput:
    """One graph to replay at one capture size (live)."""

    capture_size: int
    graph_index: int
    gm: Any
    args: tuple[Any, ...]
    """The graph's real inputs at that size (weights included), as recorded at the capture call."""


def is_tensor(x: Any) -> bool:
    import torch

    return isinstance(x, torch.Tensor)


def clone(x: Any) -> Any:
    import torch

    if isinstance(x, torch.nn.Parameter):
        return x  # weights are read-only in forward: no copy
    if isinstance(x, torch.Tensor):
        return x.detach().clone()
    if isinstance(x, (list, tuple)):
        return type(x)(clone(v) for v in x)
    return x


def flat(x: Any) -> list[Any]:
    if isinstance(x, (list, tuple)):
        return [t for v in x for t in flat(v)]
    return [x] if is_tensor(x) else []


def fresh_like(x: Any, generator: Any = None) -> Any:
    """New values of the same shape/dtype/device: normal floats, ints within the observed range."""
    import torch

    if isinstance(x, torch.nn.Parameter) or not isinstance(x, torch.Tensor):
        return x
    if x.is_floating_point():
        return torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
    if x.dtype == torch.bool:
        return torch.randint(0, 2, x.shape, device=x.device, generator=generator).bool()
    if x.numel() == 0:
        return x.clone()
    lo, hi = int(x.min()), int(x.max())
    if x.numel() <= hi - lo + 1:
        # Integer inputs are mostly indices (positions, cache slots): keep them distinct, as the
        # engine does; duplicate indices make scatter-like kernels (index_copy_) nondeterministic.
        perm = torch.randperm(hi - lo + 1, generator=generator, device=x.device)[: x.numel()] + lo
        return perm.to(x.dtype).reshape(x.shape)
    return torch.randint(lo, hi + 1, x.shape, dtype=x.dtype, device=x.device, generator=generator)


def _is_state(x: Any, gm_placeholder: Any) -> bool:
    # Buffers (k caches) keep their values: fresh values would change what the graph means.
    return compat.is_param_placeholder(gm_placeholder)


def fresh_args(gm: Any, args: Sequence[Any], seed: int) -> list[Any]:
    import torch

    gens: dict[str, Any] = {}
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    out = []
    for ph, a in zip(placeholders, args):
        if not isinstance(a, torch.Tensor) or _is_state(a, ph):
            out.append(clone(a))
            continue
        key = str(a.device)
        if key not in gens:
            gens[key] = torch.Generator(device=a.device)
            gens[key].manual_seed(seed)
        out.append(fresh_like(a, gens[key]))
    return out


def compare(actual: Any, expected: Any, skip: frozenset[int] = frozenset()) -> tuple[float, float, bool]:
    """(max abs err, max rel err, close) over all tensors, with dtype-aware tolerance.

    ``skip``: flat output positions not to compare (uninitialised buffers from ``empty``).
    """
    import torch

    a_list, e_list = flat(actual), flat(expected)
    if len(a_list) != len(e_list):
        return math.inf, math.inf, False
    max_abs = max_rel = 0.0
    close = True
    for i, (a, e) in enumerate(zip(a_list, e_list)):
        if i in skip:
            continue
        if a.shape != e.shape:
            return math.inf, math.inf, False
        if not a.is_floating_point():
            same = bool(torch.equal(a.cpu(), e.cpu()))
            max_abs = max(max_abs, 0.0 if same else float((a.cpu().double() - e.cpu().double()).abs().max()))
            close &= same
            continue
        a64, e64 = _wide(a, e)
        finite_a, finite_e = torch.isfinite(a64), torch.isfinite(e64)
        if not (bool(finite_a.all()) and bool(finite_e.all())):
            if not bool(torch.equal(finite_a, finite_e)) or not bool(torch.equal(a64[~finite_a].nan_to_num(),
                                                                                 e64[~finite_e].nan_to_num())):
                max_abs = max_rel = math.inf  # NaN/Inf in other places on the two sides
                close = False
                continue
            if bool(a64.isnan().any()):  # NaN on both sides: never "no difference"
                max_abs = max_rel = math.nan if not math.isinf(max_abs) else max_abs
                close = False
                continue
            a64, e64 = a64[finite_a], e64[finite_e]  # the same +-inf in the same places (an additive -inf mask)
        diff = (a64 - e64).abs()
        if diff.numel():
            max_abs = max(max_abs, float(diff.max()))
            max_rel = max(max_rel, float((diff / e64.abs().clamp_min(1e-6)).max()))
        rtol, atol = _tol(a.dtype)
        close &= bool(torch.allclose(a64, e64, rtol=rtol, atol=atol, equal_nan=True))
    return max_abs, max_rel, close


NON_FINITE_MESSAGE = "the output holds NaN, eager's too: no difference can be measured (see the non_finite finding)"


def non_finite_message(abs_err: float, fallback: str) -> str:
    """A size's or piece's message: NaN said as such (``compare`` returns nan for NaN on both sides, inf for
    NaN/Inf in other places; the same +-inf in the same places are equal, and the rest is compared)."""
    if math.isnan(abs_err):
        return NON_FINITE_MESSAGE
    return fallback


def _tol(dtype: Any) -> tuple[float, float]:
    import torch

    if dtype in (torch.float16, torch.bfloat16):
        return 2e-2, 2e-2
    if dtype == torch.float32:
        return 1.3e-5, 1e-4
    return 1e-7, 1e-9


_EMPTY_OPS = ("empty", "empty_like", "new_empty", "empty_strided", "empty.memory_format")


def uninitialised_outputs(module: Any) -> frozenset[int]:
    """Flat positions of a piece's outputs produced by an ``empty*`` op: their values are garbage
    until a later piece (an attention op "with output") writes them, so they are not compared."""
    out_node = next((n for n in module.graph.nodes if n.op == "output"), None)
    if out_node is None:
        return frozenset()
    flat: list[Any] = []

    def walk(a: Any) -> None:
        if isinstance(a, (list, tuple)):
            for v in a:
                walk(v)
        else:
            flat.append(a)

    walk(out_node.args[0])
    skip = set()
    for i, n in enumerate(flat):
        target = getattr(n, "target", None)
        name = getattr(target, "__name__", None) or str(target)
        if getattr(n, "op", "") in ("call_function", "call_method") and name.split(".")[-1] in _EMPTY_OPS:
            skip.add(i)
        elif getattr(n, "op", "") in ("call_function",) and any(e in str(target) for e in ("aten.empty", "aten.new_empty")):
            skip.add(i)
    return frozenset(skip)


def rmse(a: Any, b: Any) -> float:
    """Root-mean-square error over all float tensors (fp64)."""
    num, n = 0.0, 0
    for x, y in zip(flat(a), flat(b)):
        if x.is_floating_point():
            x64, y64 = _wide(x, y)
            d = x64 - y64
            num += float((d * d).sum())
            n += d.numel()
    return math.sqrt(num / n) if n else 0.0


def _wide(a: Any, e: Any) -> tuple[Any, Any]:
    """Both in float64 on ``a``'s device: a GPU compares its own outputs (a 2048-token model's pieces are billions of
    elements, minutes on one CPU thread); the CPU when the device has no room for the copies."""
    import torch

    try:
        return a.detach().double(), e.detach().to(a.device).double()
    except torch.OutOfMemoryError:
        return a.detach().double().cpu(), e.detach().double().cpu()


class NodeRunner:
    """Runs a GraphModule node by node (an FX interpreter) and remembers the node it is in.

    An exception raised inside CUDA-graph capture (or during a replay run) is attributed to that
    node; ``upto`` stops after that many call nodes (a prefix, for bisection); ``keep`` keeps
    every node's value (for finding the first node that differs).
    """

    def __init__(self, module: Any, upto: Optional[int] = None, keep: bool = False) -> None:
        import torch.fx

        self.node: Any = None
        self.index = -1
        self.values: dict[str, Any] = {}
        runner = self

        class _Interp(torch.fx.Interpreter):
            def run_node(self, n: Any) -> Any:
                if n.op not in ("placeholder", "output", "get_attr"):
                    runner.index += 1
                    if upto is not None and runner.index >= upto:
                        raise _Stop()
                    runner.node = n
                out = super().run_node(n)
                if keep and n.op not in ("placeholder", "output"):
                    runner.values[n.name] = out
                return out

        self._interp = _Interp(module)

    def run(self, *args: Any) -> Any:
        try:
            return self._interp.run(*args)
        except _Stop:
            return None


class _Stop(Exception):
    pass


def call_nodes(module: Any) -> list[Any]:
    """The call nodes of a piece, in order (what a prefix counts)."""
    return [n for n in module.graph.nodes if n.op not in ("placeholder", "output", "get_attr")]


def first_difference(actual: dict[str, Any], expected: dict[str, Any], module: Any) -> Optional[tuple[Any, float]]:
    """(first call node whose value differs between two node-by-node runs, its max abs error), None if none does."""
    skip = _uninitialised_nodes(module)
    for n in call_nodes(module):
        if n.name in skip or n.name not in actual or n.name not in expected:
            continue
        if not flat(actual[n.name]) and not flat(expected[n.name]):
            continue
        abs_e, _, close = compare(actual[n.name], expected[n.name])
        if not close:
            return n, abs_e
    return None


def _uninitialised_nodes(module: Any) -> set[str]:
    names = set()
    for n in module.graph.nodes:
        target = getattr(n.target, "__name__", None) or str(n.target)
        if n.op in ("call_function", "call_method") and (target.split(".")[-1] in _EMPTY_OPS or "aten.empty" in str(n.target)
                                                         or "aten.new_empty" in str(n.target)):
            names.add(n.name)
    return names


STATUS_ORDER = ("ok", "skipped", "mismatch", "capture_failed", "error")


def worst_status(statuses: Any) -> str:
    """The worst of some replay statuses ('ok' for none)."""
    worst = "ok"
    for s in statuses:
        if STATUS_ORDER.index(s) > STATUS_ORDER.index(worst):
            worst = s
    return worst


@contextlib.contextmanager
def gc_only_if(first: bool) -> Iterator[None]:
    """Within: ``gc.collect`` and ``torch.cuda.empty_cache`` do nothing unless ``first`` (sglang runs them for a
    forward's first captured piece only)."""
    # sglang runs gc and empty_cache for the first graph only: once per piece is very slow.
    if first:
        yield
        return
    import torch

    with mock.patch("gc.collect", lambda *a: 0), mock.patch.object(torch.cuda, "empty_cache", lambda: None):
        yield
