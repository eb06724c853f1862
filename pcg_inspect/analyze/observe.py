"""The eager observation: what the engine will meet that Dynamo may not show.

The target runs eagerly (at up to two capture sizes) under a dispatch mode that records every
custom op call (fake kernel, mutations, aliasing), every host sync (in the user's code and inside
custom-op kernels, which run with the mode still active) and every module tensor attribute
rebound in forward. Each record carries the user's line from the Python stack, so a problem is
reported at its own line even where Dynamo never reached (a frame abandoned at a fatal break).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from .. import _torch_compat as compat
from ..causes import host_sync_cause
from ..errors import one_line
from ..frames import is_user_file, live_user_frame
from ..fingerprint import delta, snapshot
from .sizes import equal_expressions


@dataclass
class OpCall:
    """One observed call of a custom op."""

    tokens: Optional[int]
    arg_names: list[str]
    args: list[Any]
    """Per argument: ('tensor', shape, dtype, device, stride) or the Python value."""
    outputs: list[tuple]
    """Per tensor output: (shape, dtype, device, stride, storage offset)."""
    mutated: list[str]
    aliased: list[str]
    fake_outputs: Optional[list[tuple]] = None
    fake_error: str = ""
    omitted: list[str] = field(default_factory=list)
    """Arguments the caller left out (the schema's default filled in)."""
    alias_refused: bool = False
    """torch.library.custom_op refused the kernel's output as an alias of an input (the eager call raised);
    ``aliased`` then lists every tensor argument (which one is not known)."""


@dataclass
class OpInfo:
    """A custom op as the eager run saw it."""

    name: str
    """'ns.op' (overload dropped when default)."""
    overload: Any
    has_fake: bool
    declared_mutable: list[str]
    returns_nothing: bool
    mutates_unknown: bool = False
    """Declared with mutates_args="unknown"."""
    defaults: dict[str, Any] = field(default_factory=dict)
    """Schema defaults (name -> value)."""
    calls: list[OpCall] = field(default_factory=list)
    sites: list[tuple[str, int]] = field(default_factory=list)
    """User lines that called it (eager Python stack)."""
    syncs: list["SyncSeen"] = field(default_factory=list)
    """Host syncs its kernel did."""
    in_break: bool = False
    """Every call ran inside a breakable break point (a break op itself, or called from an ``@eager_on_graph``
    function): eager under breakable."""


@dataclass
class SyncSeen:
    """A host sync the eager run did."""

    op: str
    """The aten op, e.g. 'aten._local_scalar_dense'."""
    cause: str
    site: tuple[str, int]
    """The deepest user line when it happened (inside a kernel: the kernel's line)."""
    inside: str = ""
    """The custom op whose kernel did it ('' in the user's own code)."""
    tokens: Optional[int] = None
    output_size: tuple[str, ...] = ()
    """repeat_interleave: shape expressions in the calling frame equal to this call's total (``analyze.sizes``)."""
    in_break: bool = False
    """Inside a breakable break point (eager under breakable)."""


@dataclass
class StateChange:
    """A module tensor attribute rebound during forward."""

    module: str
    """The module's class name."""
    qualified: str
    """Its path in the target, e.g. 'layers.0.rotary'."""
    attribute: str
    is_buffer: bool


@dataclass
class Observation:
    """Everything the eager run recorded."""

    ops: dict[str, OpInfo] = field(default_factory=dict)
    syncs: list[SyncSeen] = field(default_factory=list)
    state_changes: list[StateChange] = field(default_factory=list)
    errors: list[tuple[str, tuple[str, int]]] = field(default_factory=list)
    """('Type: message', the deepest user line it was raised at) per eager failure."""
    repro: Any = None
    """``repro.Repro``: two eager calls on identical inputs, op by op (None when not checked)."""
    effects: Optional[dict[Any, str]] = None
    """``effects.delta`` of the first eager call (side effects, for compile_divergence)."""
    break_functions: dict[str, tuple[str, int]] = field(default_factory=dict)
    """``@eager_on_graph`` functions the forward called (breakable's break points) -> the user line of the first call."""
    outputs: dict[int, Any] = field(default_factory=dict)
    """tokens -> the forward's output structure (``output_structure``), per observed size."""
    segments: list[str] = field(default_factory=list)
    """breakable's segments at the largest observed size, in order: a digest of each one's ops (op, shapes, dtypes),
    so identical segments (repeated layers) have the same digest — what sglang's executable dedup can share."""


def observe(module: Any, calls: Sequence[Any], roots: Sequence[str], break_ops: Sequence[str] = (),
            count_segments: bool = False) -> Observation:
    """Run the module eagerly at up to two capture sizes (largest first) under the observer.

    Args:
        module: the target module.
        calls: ``load.Call`` records (inputs per capture size).
        roots: the user's folders (which frames are the user's).
        break_ops: breakable's break ops (``breakpoints``): what runs inside them is marked ``in_break``.
        count_segments: record breakable's segments at the largest size (``Observation.segments``).
    Returns:
        The Observation. An exception from the target is recorded, not raised (the trace reports it).
    Raises:
        TargetError: the target called sys.exit.
    """
    import torch

    from ..breakpoints import Depth

    obs = Observation()
    depth = Depth(break_ops)

    def seen(name: str, args: tuple, kwargs: dict, out: Any) -> None:
        obs.break_functions.setdefault(name, _user_site(roots))

    chosen = sorted(calls, key=lambda c: -(c.tokens or 0))[:2]
    for c in chosen:
        a = [x.detach().clone() if isinstance(x, torch.Tensor) else x for x in c.args]
        k = {n: (v.detach().clone() if isinstance(v, torch.Tensor) else v) for n, v in c.kwargs.items()}
        before = _tensor_attributes(module)
        snap = snapshot(module, roots) if c is chosen[0] else None
        try:
            segments = _Segments() if count_segments and c is chosen[0] else None
            depth.on_enter = segments.cut if segments is not None else None
            with torch.no_grad(), compat.quiet_fx_errors(), depth.functions(seen), \
                    _observer(obs, roots, c.tokens, depth, segments):
                out = module(*a, **k)
            if segments is not None:
                obs.segments = segments.digests()
            obs.outputs[c.tokens or 0] = output_structure(out)
            if snap is not None:
                obs.effects = delta(snap, snapshot(module, roots))
        except Exception as exc:
            frames = [f for f in traceback.extract_tb(exc.__traceback__) if is_user_file(f.filename, roots)]
            obs.errors.append((one_line(exc), (frames[-1].filename, int(frames[-1].lineno or 0)) if frames else ("", 0)))
        _state_changes(obs, before, _tensor_attributes(module))
    if chosen and not obs.errors:
        from .repro import check

        obs.repro = check(module, chosen[-1], roots)  # the smallest size: two more eager calls, op by op
    return obs


def output_structure(out: Any) -> Any:
    """What a forward returns, as the engine's output buffer sees it: containers kept, each tensor as (shape, dtype),
    any other value as its type name."""
    import torch

    if isinstance(out, torch.Tensor):
        return ("tensor", tuple(out.shape), str(out.dtype).replace("torch.", ""))
    if isinstance(out, (tuple, list)):
        return (type(out).__name__, tuple(output_structure(o) for o in out))
    if isinstance(out, dict):
        return ("dict", tuple((k, output_structure(v)) for k, v in out.items()))
    if hasattr(out, "__dict__") and not isinstance(out, type):
        return (type(out).__name__, tuple((k, output_structure(v)) for k, v in vars(out).items()))
    return type(out).__name__


class _Segments:
    """The op sequence of each stretch between break points (a breakable segment)."""

    def __init__(self) -> None:
        self.done: list[list[str]] = []
        self.current: list[str] = []

    def add(self, func: Any, args: tuple, out: Any) -> None:
        self.current.append(f"{func}{_shapes(args)}->{_shapes(out if isinstance(out, (tuple, list)) else (out,))}")

    def cut(self) -> None:
        self.done.append(self.current)
        self.current = []

    def digests(self) -> list[str]:
        import hashlib

        return [hashlib.sha1(";".join(ops).encode()).hexdigest()[:12] for ops in [*self.done, self.current]]


def _shapes(values: Any) -> str:
    import torch

    return "(" + ",".join(f"{tuple(v.shape)}{str(v.dtype)[6:]}" if isinstance(v, torch.Tensor) else type(v).__name__
                          for v in values) + ")"


def _observer(obs: Observation, roots: Sequence[str], tokens: Optional[int], depth: Any,
              segments: Optional[_Segments] = None) -> Any:
    base = compat.dispatch_mode_base()

    class _Observer(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.inside: list[OpInfo] = []

        def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            ns = getattr(func, "namespace", "")
            if ns in ("aten", "prim", "prims") or not ns:
                cause = sync_cause(func, args, kwargs)
                if cause == "repeat_interleave":  # record the total, to find what output_size= it equals
                    out = func(*args, **kwargs)
                    self._sync(func, cause, int(out.shape[0]))
                    return out
                if cause:
                    self._sync(func, cause)
                out = func(*args, **kwargs)
                if segments is not None and not depth.inside and not self.inside:
                    segments.add(func, args, out)
                return out
            if self.inside:  # a custom op inside another's kernel: the outer one is what the graph holds
                return compat.call_kernel_observed(self, func, args, kwargs)
            captured = segments is not None and not depth.inside and not depth.is_break_op(func)
            out = self._op(func, args, kwargs)
            if captured:
                segments.add(func, args, out)
            return out

        def _sync(self, func: Any, cause: str, total: Optional[int] = None) -> None:
            inside = self.inside[-1] if self.inside else None
            frame = live_user_frame(roots)  # inside a kernel: the kernel's line
            site = (frame.f_code.co_filename, frame.f_lineno) if frame is not None else ("", 0)
            exprs = (equal_expressions(total, dict(frame.f_locals))
                     if frame is not None and total is not None and inside is None else ())
            seen = SyncSeen(str(func.overloadpacket), cause, site, inside.name if inside else "", tokens, exprs,
                            depth.inside)
            (inside.syncs if inside else obs.syncs).append(seen)

        def _op(self, func: Any, args: tuple, kwargs: dict) -> Any:
            info = _op_info(obs, func)
            site = _user_site(roots)
            first = not info.sites
            if site not in info.sites:
                info.sites.append(site)
            is_break = depth.is_break_op(func)
            info.in_break = (first or info.in_break) and (is_break or depth.inside)
            self.inside.append(info)
            try:
                if is_break:
                    with depth.entered():
                        return _observe_call(self, info, func, args, kwargs, tokens)
                return _observe_call(self, info, func, args, kwargs, tokens)
            finally:
                self.inside.pop()

    return _Observer()


def sync_cause(func: Any, args: tuple, kwargs: dict) -> str:
    """Why an aten op reads device memory on the host ('' when it does not)."""
    import torch

    base = str(func.overloadpacket).split(".")[-1]
    overload = getattr(func, "_overloadname", "")
    if base == "repeat_interleave":
        return "repeat_interleave" if overload.startswith(("Tensor", "self_Tensor")) and kwargs.get("output_size") is None else ""
    if base == "index" and any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else ()) or ()):
        return "dynamic_shape"
    if base in ("_to_copy", "copy_"):
        src, dst = (args[0], kwargs.get("device")) if base == "_to_copy" else (args[1] if len(args) > 1 else None, args[0])
        src_cuda = isinstance(src, torch.Tensor) and src.is_cuda
        dst_cpu = (isinstance(dst, torch.Tensor) and dst.device.type == "cpu") or (str(dst) == "cpu")
        return "host_copy" if src_cuda and dst_cpu else ""
    if base in ("equal", "allclose"):
        return "scalar"
    return host_sync_cause(base)


def _op_info(obs: Observation, func: Any) -> OpInfo:
    from ..opnames import target_key

    name = target_key(func)
    info = obs.ops.get(name)
    if info is None:
        info = OpInfo(name=name, overload=func, has_fake=compat.has_fake_kernel(func),
                      declared_mutable=list(compat.mutable_args(func)), returns_nothing=compat.returns_nothing(func),
                      mutates_unknown=compat.mutates_unknown(func), defaults=compat.argument_defaults(func))
        obs.ops[name] = info
    return info


def _observe_call(mode: Any, info: OpInfo, func: Any, args: tuple, kwargs: dict, tokens: Optional[int]) -> Any:
    import torch

    names = compat.argument_names(func)
    omitted = [n for n in names[len(args):] if n not in kwargs]
    bound = list(args) + [kwargs[n] if n in kwargs else info.defaults.get(n) for n in names[len(args):]]
    before = [a.detach().clone() if isinstance(a, torch.Tensor) else None for a in bound]
    versions = [compat.version_counter(a) if isinstance(a, torch.Tensor) else 0 for a in bound]
    storages = {i: a.untyped_storage().data_ptr() for i, a in enumerate(bound) if isinstance(a, torch.Tensor)}
    try:
        out = compat.call_kernel_observed(mode, func, args, kwargs)
    except RuntimeError as exc:  # torch.library.custom_op refuses a kernel that returns an alias of its input
        if _ALIAS_REFUSED not in str(exc):
            raise
        info.calls.append(OpCall(tokens=tokens, arg_names=names, args=[_record(a) for a in bound], outputs=[], mutated=[],
                                 aliased=[n for n, a in zip(names, bound) if isinstance(a, torch.Tensor)], alias_refused=True))
        raise
    outs = [o for o in (out if isinstance(out, (tuple, list)) else [out]) if isinstance(o, torch.Tensor)]
    # Written: an in-place op bumped its version, or (a kernel writing through raw pointers) its values changed.
    mutated = [names[i] for i, (a, b, v) in enumerate(zip(bound, before, versions))
               if b is not None and (compat.version_counter(a) != v or not _same(a, b))]
    aliased = list(dict.fromkeys(names[i] for o in outs for i, ptr in storages.items() if o.untyped_storage().data_ptr() == ptr))
    call = OpCall(
        tokens=tokens, arg_names=names,
        args=[_record(a) for a in bound], outputs=[_layout(o) for o in outs], omitted=omitted,
        mutated=mutated, aliased=aliased,
    )
    if info.has_fake:
        call.fake_outputs, call.fake_error = _run_fake(func, args, kwargs)
    info.calls.append(call)
    return out


def _same(a: Any, b: Any) -> bool:
    """Bit-for-bit equal (an unwritten torch.empty buffer full of NaNs is still "the same")."""
    import torch

    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.numel() == 0:
        return True
    return bool(torch.equal(a.detach().reshape(-1).contiguous().view(torch.uint8), b.detach().reshape(-1).contiguous().view(torch.uint8)))


def _run_fake(func: Any, args: tuple, kwargs: dict) -> tuple[Optional[list[tuple]], str]:
    import torch

    try:
        out = compat.run_fake(func, args, kwargs)
    except Exception as exc:
        return None, one_line(exc)
    outs = [o for o in (out if isinstance(out, (tuple, list)) else [out]) if isinstance(o, torch.Tensor)]
    return [_layout(o) for o in outs], ""


_ALIAS_REFUSED = "may not alias any inputs"
"""torch.library.custom_op's own check on a kernel's outputs (its eager call raises)."""


def _record(a: Any) -> Any:
    import torch

    return ("tensor", tuple(a.shape), str(a.dtype), str(a.device), tuple(a.stride())) if isinstance(a, torch.Tensor) else a


def _layout(o: Any) -> tuple:
    return (tuple(o.shape), str(o.dtype), str(o.device), tuple(o.stride()), int(o.storage_offset()))


def _user_site(roots: Sequence[str]) -> tuple[str, int]:
    """The deepest user frame on the current Python stack, outside pcg_inspect itself."""
    frame = live_user_frame(roots)
    return (frame.f_code.co_filename, frame.f_lineno) if frame is not None else ("", 0)


def _tensor_attributes(module: Any) -> dict[tuple[str, str], tuple[int, str, bool]]:
    """(module path, attribute) -> (id of the tensor, class name, is a registered buffer/parameter)."""
    import torch

    out = {}
    for path, m in module.named_modules():
        for name, t in list(m.named_buffers(recurse=False)) + list(m.named_parameters(recurse=False)):
            out[(path, name)] = (id(t), type(m).__name__, True)
        for name, v in vars(m).items():
            if isinstance(v, torch.Tensor) and not name.startswith("_"):
                out[(path, name)] = (id(v), type(m).__name__, False)
    return out


def _state_changes(obs: Observation, before: dict, after: dict) -> None:
    for key, (ident, cls, is_buffer) in after.items():
        if key in before and before[key][0] != ident:
            change = StateChange(cls, key[0], key[1], is_buffer)
            if change not in obs.state_changes:
                obs.state_changes.append(change)
