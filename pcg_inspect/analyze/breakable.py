"""What sglang's breakable and full backends need of a forward beyond capture-safe ops, checked without a GPU.

- **output_structure**: the output is copied into one buffer made for the largest size and sliced per size, so
  every size must return the same structure (``Observation.outputs``, from the observed sizes).
- **stale_break_arg** / **baked_break_output** (breakable): a break point is replayed as a closure over its
  capture-time arguments, and the segments after it were captured with its capture-time result. The forward runs
  twice more at one size with other input values (floating inputs redrawn, integer ones kept: they are indices and
  lengths), and each break point's calls are compared: a Python argument that changed, a tensor argument that is
  not an input, a weight or an allocation of the forward itself and whose identity changed, a non-tensor result
  that changed. What changed is what capture would have frozen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from .. import _torch_compat as compat
from ..details import BreakArgDetails, OutputStructureDetails
from ..frames import live_user_frame, source_line
from ..report import Finding
from .observe import Observation


@dataclass
class _Call:
    name: str
    site: tuple[str, int]
    values: dict[str, str]
    """Python arguments (repr) by position or keyword."""
    foreign: dict[str, int]
    """Tensor arguments outside the static buffers -> storage address."""
    result: Optional[str] = None
    """A non-tensor result (repr); None for tensors / None."""


@dataclass
class _Run:
    calls: list[_Call] = field(default_factory=list)
    produced: set[int] = field(default_factory=set)
    """Storage addresses the forward allocated (a graph pool under capture: static)."""


def output_structure_findings(obs: Optional[Observation], target: Any) -> list[Finding]:
    """output_structure when two observed sizes returned structures that differ by more than the token dim (at the
    forward's line)."""
    if obs is None or len(obs.outputs) < 2:
        return []
    (a, sa), (b, sb) = sorted(obs.outputs.items())[:2]
    if _fits(sa, a, sb, b):
        return []
    shown = {a: _show(sa, a), b: _show(sb, b)}
    sizes = tuple(shown)
    file, line = target.entry[0] or target.factory_file, target.entry[1] or target.factory_line
    text = "; ".join(f"{size} tokens: {shown[size]}" for size in sizes)
    return [Finding(
        kind="output_structure", severity="error", file=file, line=line, code=source_line(file, line),
        message=f"the forward returns another structure at another size ({text}): breakable and full copy it into one "
                "buffer made for the largest size and sliced per size",
        hint="Return the same structure at every size; only the first (token) dim may vary.",
        details=OutputStructureDetails(sizes, tuple(shown.values())))]


def break_findings(module: Any, call: Any, roots: Sequence[str], break_ops: Sequence[str]) -> list[Finding]:
    """stale_break_arg and baked_break_output: two forwards at ``call``'s size with other input values, compared
    break point by break point (nothing when the forward has no break point)."""
    first = _run(module, call, roots, break_ops, seed=1)
    if first is None or not first.calls:
        return []
    second = _run(module, call, roots, break_ops, seed=2)
    if second is None:
        return []
    size = call.tokens or 0
    out: dict[tuple, Finding] = {}
    for a, b in zip(first.calls, second.calls):
        if a.name != b.name:
            break  # another path: the comparison ends here
        for arg, then in a.values.items():
            now = b.values.get(arg)
            if now is not None and now != then:
                out.setdefault((a.name, arg), _finding("stale_break_arg", a, arg, "python_value", then, now, size))
        for arg, ptr in a.foreign.items():
            if arg in b.foreign and b.foreign[arg] != ptr:
                out.setdefault((a.name, arg), _finding("stale_break_arg", a, arg, "foreign_tensor", f"storage {ptr:#x}",
                                                       f"storage {b.foreign[arg]:#x}", size))
        if a.result is not None and b.result is not None and a.result != b.result:
            out.setdefault((a.name, "return"), _finding("baked_break_output", a, "return", "returned_value", a.result,
                                                        b.result, size))
    return list(out.values())


def _finding(kind: str, call: _Call, arg: str, reason: str, then: str, now: str, size: int) -> Finding:
    file, line = call.site
    what = {
        "python_value": f"its argument {arg} was {then} on one call and {now} on the next: breakable replays the break "
                        f"with the capture-time {arg}",
        "foreign_tensor": f"its tensor argument {arg} is neither an input, a weight nor an allocation of the forward, "
                          f"and is another tensor on each call ({then}, then {now}): breakable's closure keeps the "
                          "capture-time tensor",
        "returned_value": f"it returned {then} on one call and {now} on the next, and the segments after it were "
                          f"captured with {then}",
    }[reason]
    return Finding(
        kind=kind, severity="error", file=file, line=line, code=source_line(file, line), op=call.name,
        message=f"breakable: the break point {call.name}: {what}; capture succeeds and every replay is wrong",
        hint=("Read per-call state inside the break function, or pass it as a device tensor in a static buffer "
              "(sglang's eager_on_graph contract)." if reason != "returned_value" else
              "Return a tensor and keep the captured shapes independent of it, or compute the value before the graph."),
        details=BreakArgDetails(call.name, arg, reason, then, now, size))


def _run(module: Any, call: Any, roots: Sequence[str], break_ops: Sequence[str], seed: int) -> Optional[_Run]:
    """One forward with redrawn floating inputs, recording every break point's call."""
    import torch

    from ..breakpoints import Depth
    from ..opnames import target_key

    gen = torch.Generator().manual_seed(seed)
    args = [_redrawn(a, gen) for a in call.args]
    kwargs = {k: _redrawn(v, gen) for k, v in call.kwargs.items()}
    static = {_storage(t) for t in _tensors(args, kwargs)}
    static |= {_storage(t) for t in list(module.parameters()) + list(module.buffers())}
    run, depth = _Run(), Depth(break_ops)

    def site() -> tuple[str, int]:
        frame = live_user_frame(roots)
        return (frame.f_code.co_filename, frame.f_lineno) if frame is not None else ("", 0)

    def function_call(name: str, where: tuple[str, int], fargs: tuple, fkwargs: dict, result: Any) -> None:
        run.calls.append(_describe(name, where, fargs, fkwargs, result, static, run.produced))

    base = compat.dispatch_mode_base()

    class _Watch(base):  # type: ignore[misc, valid-type]
        def __torch_dispatch__(self, func: Any, types: Any, a: tuple = (), kw: Any = None) -> Any:
            kw = kw or {}
            if depth.is_break_op(func) and not depth.inside:
                where = site()
                with depth.entered():
                    out = func(*a, **kw)
                run.calls.append(_describe(target_key(func), where, a, kw, None, static, run.produced))
            else:
                out = func(*a, **kw)
            for t in _tensors(out if isinstance(out, (tuple, list)) else [out], {}):
                run.produced.add(_storage(t))
            return out

    try:
        with torch.no_grad(), _Watch(), depth.functions(lambda name, a, kw, out: function_call(name, site(), a, kw, out)):
            module(*args, **kwargs)
    except Exception:
        return None  # the eager run's error is reported by the observation
    return run


def _describe(name: str, site: tuple[str, int], args: Sequence[Any], kwargs: dict, result: Any, static: set[int],
              produced: set[int]) -> _Call:
    import torch

    from ..breakpoints import is_plain, python_arguments

    values = {key: repr(value) for key, value in python_arguments(args, kwargs).items()}
    foreign: dict[str, int] = {}
    for key, value in [(f"arg{i}", a) for i, a in enumerate(args)] + list(kwargs.items()):
        if isinstance(value, torch.Tensor):
            ptr = _storage(value)
            if ptr not in static and ptr not in produced:
                foreign[key] = ptr
    shown = repr(result) if result is not None and is_plain(result) else None
    return _Call(name, site, values, foreign, shown)


def _redrawn(value: Any, gen: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            return torch.randn(value.shape, generator=gen, dtype=torch.float32).to(value.dtype).to(value.device)
        return value.clone()
    return value


def _tensors(args: Sequence[Any], kwargs: dict) -> list[Any]:
    import torch

    flat: list[Any] = []
    for v in list(args) + list(kwargs.values()):
        if isinstance(v, torch.Tensor):
            flat.append(v)
        elif isinstance(v, (tuple, list)):
            flat += [x for x in v if isinstance(x, torch.Tensor)]
    return flat


def _storage(t: Any) -> int:
    try:
        return int(t.untyped_storage().data_ptr())
    except Exception:
        return 0


def _fits(a: Any, size_a: int, b: Any, size_b: int) -> bool:
    """The same structure at two sizes, up to the token dim: containers alike, each tensor of the same rank and
    dtype, each dim equal or the size itself on both sides."""
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    if a[0] != b[0] or len(a) != len(b):
        return False
    if a[0] == "tensor":
        return (a[2] == b[2] and len(a[1]) == len(b[1])
                and all(x == y or (x == size_a and y == size_b) for x, y in zip(a[1], b[1])))
    if len(a[1]) != len(b[1]):
        return False
    if a[0] in ("tuple", "list"):
        return all(_fits(x, size_a, y, size_b) for x, y in zip(a[1], b[1]))
    return all(ka == kb and _fits(x, size_a, y, size_b) for (ka, x), (kb, y) in zip(a[1], b[1]))


def _show(structure: Any, size: int) -> str:
    """('tensor', (8, 16), 'float32') at 8 tokens -> 'tensor[T, 16] float32'; containers with their items."""
    if isinstance(structure, str):
        return structure
    tag, body = structure[0], structure[1]
    if tag == "tensor":
        return f"tensor[{', '.join('T' if d == size else str(d) for d in body)}] {structure[2]}"
    if tag in ("tuple", "list"):
        return f"{tag}({', '.join(_show(item, size) for item in body)})"
    return f"{tag}({', '.join(f'{key}={_show(item, size)}' for key, item in body)})"
