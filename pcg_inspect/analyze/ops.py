"""Ops under PCG: observe every custom op in an eager run and check what Dynamo will assume of it.

For each non-aten op called by the target (seen at the dispatcher, so C++ extension ops count):
- ``unregistered_op``: no fake/meta kernel. Dynamo breaks on it (or, for an op that returns
  nothing, records it blind). A fake impl is derived from the shapes observed at two sizes.
- ``fake_impl_mismatch``: the fake impl's output shape/dtype/device differs from the kernel's.
- ``undeclared_mutation``: the kernel wrote to an argument its schema does not mark mutable
  (values compared before/after, so ``.data`` writes count too).
- ``output_aliases_input``: an output shares storage with an input.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from .. import _torch_compat as compat
from ..details import OpDetails
from ..report import Finding
from ..frames import is_user_file, source_line


@dataclass
class OpCall:
    """One observed call of an op."""

    tokens: Optional[int]
    arg_names: list[str]
    args: list[Any]
    """Per argument: ('tensor', shape, dtype, device) or the Python value."""
    outputs: list[tuple]
    """Per tensor output: (shape, dtype, device, stride)."""
    mutated: list[str]
    aliased: list[str]
    fake_outputs: Optional[list[tuple]] = None
    fake_error: str = ""


@dataclass
class OpInfo:
    name: str
    """'ns.op' (overload dropped when default)."""
    overload: Any
    has_fake: bool
    declared_mutable: list[str]
    returns_nothing: bool
    calls: list[OpCall] = field(default_factory=list)


def observe(module: Any, calls: Sequence[Any], skip_namespaces: Sequence[str] = ("aten", "prim", "prims")) -> dict[str, OpInfo]:
    """Run the module eagerly at up to two capture sizes and record every custom op call.

    Args:
        module: the target module.
        calls: ``load.Call`` records (inputs per capture size).
    Returns:
        Op name -> OpInfo.
    """
    import torch

    TorchDispatchMode = compat.dispatch_mode_base()
    ops: dict[str, OpInfo] = {}
    state = {"tokens": None}

    class Observe(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            ns = getattr(func, "namespace", "")
            if ns in skip_namespaces or not ns:
                return func(*args, **kwargs)
            return _observe_call(func, args, kwargs, ops, state["tokens"])

    chosen = sorted((c for c in calls), key=lambda c: -(c.tokens or 0))[:2]
    for c in chosen:
        state["tokens"] = c.tokens
        a = [x.detach().clone() if isinstance(x, torch.Tensor) else x for x in c.args]
        k = {n: (v.detach().clone() if isinstance(v, torch.Tensor) else v) for n, v in c.kwargs.items()}
        try:
            with torch.no_grad(), Observe():
                module(*a, **k)
        except Exception:
            continue  # the trace already reports a target that fails eagerly
    return ops


def _observe_call(func: Any, args: tuple, kwargs: dict, ops: dict[str, OpInfo], tokens: Optional[int]) -> Any:
    import torch

    from ..split import target_key

    name = target_key(func)
    info = ops.get(name)
    if info is None:
        info = OpInfo(
            name=name,
            overload=func,
            has_fake=compat.has_fake_kernel(func),
            declared_mutable=list(compat.mutable_args(func)),
            returns_nothing=compat.returns_nothing(func),
        )
        ops[name] = info
    names = compat.argument_names(func)
    bound = list(args) + [kwargs[n] for n in names[len(args):] if n in kwargs]
    before = [a.detach().clone() if isinstance(a, torch.Tensor) else None for a in bound]
    storages = {i: a.untyped_storage().data_ptr() for i, a in enumerate(bound) if isinstance(a, torch.Tensor)}
    out = func(*args, **kwargs)
    outs = [o for o in (out if isinstance(out, (tuple, list)) else [out]) if isinstance(o, torch.Tensor)]
    mutated = [
        names[i] for i, (a, b) in enumerate(zip(bound, before))
        if b is not None and not _same(a, b)
    ]
    aliased = []
    for o in outs:
        for i, ptr in storages.items():
            if o.untyped_storage().data_ptr() == ptr and names[i] not in aliased:
                aliased.append(names[i])
    call = OpCall(
        tokens=tokens,
        arg_names=names,
        args=[("tensor", tuple(a.shape), str(a.dtype), str(a.device)) if isinstance(a, torch.Tensor) else a for a in bound],
        outputs=[(tuple(o.shape), str(o.dtype), str(o.device), tuple(o.stride())) for o in outs],
        mutated=mutated,
        aliased=aliased,
    )
    if info.has_fake:
        call.fake_outputs, call.fake_error = _run_fake(func, args, kwargs)
    info.calls.append(call)
    return out


def _same(a: Any, b: Any) -> bool:
    import torch

    if a.shape != b.shape:
        return False
    return bool(torch.equal(a, b)) or bool(torch.isnan(a).all() and torch.isnan(b).all())


def _run_fake(func: Any, args: tuple, kwargs: dict) -> tuple[Optional[list[tuple]], str]:
    import torch

    try:
        out = compat.run_fake(func, args, kwargs)
    except Exception as exc:
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    outs = [o for o in (out if isinstance(out, (tuple, list)) else [out]) if isinstance(o, torch.Tensor)]
    return [(tuple(o.shape), str(o.dtype), str(o.device), tuple(o.stride())) for o in outs], ""


# ------------------------------------------------------------------------ findings


def op_findings(ops: dict[str, OpInfo], graphs: Sequence[Any], breaks: Sequence[Any], roots: Sequence[str]) -> list[Finding]:
    """Findings for the observed ops, placed at the user line that calls each one."""
    sites = _call_sites(graphs, breaks, roots)
    out: list[Finding] = []
    for name, info in ops.items():
        if not info.calls:
            continue
        file, line = sites.get(name, ("", 0))
        at = dict(file=file, line=line, code=source_line(file, line), op=name)
        if not info.has_fake:
            out.append(_unregistered(info, at))
        out += _mutation_findings(info, at)
        mism = _fake_mismatch(info)
        if mism:
            out.append(Finding(
                kind="fake_impl_mismatch", severity="error",
                message=f"{_qual(info)}: the fake impl says {mism[0]} but the kernel returns {mism[1]}; Dynamo plans every "
                "later shape from the fake, so the captured graph is wrong or capture fails",
                hint="Make the fake impl return what the kernel returns (below, from the observed shapes).",
                fix=fake_impl_from_observation(info), details=_details(info), **at,
            ))
    return out


def _qual(info: OpInfo) -> str:
    return info.name.replace(".", "::", 1)


def _unregistered(info: OpInfo, at: dict[str, Any]) -> Finding:
    sglang_style = info.name.startswith("sglang.")
    blind = "Dynamo records it without knowing what it does" if info.returns_nothing else "Dynamo breaks the graph on it"
    return Finding(
        kind="unregistered_op", severity="error",
        message=f"{_qual(info)} has no fake/meta kernel: {blind}; under PCG it must be a registered custom op with a fake impl",
        hint=(
            "Pass fake_impl= to its register_custom_op(mutates_args=...) (the body below, derived from the shapes "
            "observed in an eager run); add @register_split_op() if it must stay eager."
            if sglang_style
            else "Register a fake impl (below, derived from the shapes observed in an eager run); with sglang, "
            "register_custom_op(mutates_args=..., fake_impl=...). Make it a split op if it must stay eager."
        ),
        fix=fake_impl_from_observation(info), details=_details(info), **at,
    )


def _mutation_findings(info: OpInfo, at: dict[str, Any]) -> list[Finding]:
    out = []
    c = info.calls[0]
    undeclared = [m for m in c.mutated if m not in info.declared_mutable]
    if undeclared:
        out.append(Finding(
            kind="undeclared_mutation", severity="error",
            message=f"{_qual(info)} writes to {', '.join(undeclared)} but its schema does not declare it mutable: under "
            "AOT/inductor the call can be reordered or dropped when its result is unused, and the compiled model "
            "silently differs from eager",
            hint=f"Declare it: mutates_args=({', '.join(repr(m) for m in undeclared)},) (schema 'Tensor(a!) name'); "
            "torch.library.opcheck reports the same.",
            details=_details(info), **at,
        ))
    if c.aliased:
        out.append(Finding(
            kind="output_aliases_input", severity="error",
            message=f"{_qual(info)} returns a tensor that shares storage with its input {', '.join(c.aliased)}: custom ops "
            "must return fresh tensors; a captured graph that reuses the input buffer sees the alias change",
            hint="Return a copy (.clone()) or write into a declared mutable output argument instead.",
            details=_details(info), **at,
        ))
    return out


def _details(info: OpInfo) -> OpDetails:
    c = info.calls[0]
    return OpDetails(
        observed_inputs={n: (list(a[1]) if isinstance(a, tuple) and a and a[0] == "tensor" else repr(a)) for n, a in zip(c.arg_names, c.args)},
        observed_outputs=tuple(tuple(o[0]) for o in c.outputs),
        mutated=tuple(c.mutated),
        declared_mutable=tuple(info.declared_mutable),
    )


def _fake_mismatch(info: OpInfo) -> Optional[tuple[str, str]]:
    for c in info.calls:
        if c.fake_outputs is None:
            if c.fake_error:
                return (f"an error ({c.fake_error})", _fmt_outs(c.outputs))
            continue
        if len(c.fake_outputs) != len(c.outputs):
            return (f"{len(c.fake_outputs)} output(s)", f"{len(c.outputs)}")
        for f, r in zip(c.fake_outputs, c.outputs):
            if f[0] != r[0] or f[1] != r[1] or f[2].split(":")[0] != r[2].split(":")[0]:
                return (_fmt_outs([f]), _fmt_outs([r]))
    return None


def _fmt_outs(outs: Sequence[tuple]) -> str:
    return ", ".join(f"[{', '.join(map(str, o[0]))}] {o[1].replace('torch.', '')} on {o[2]}" for o in outs) or "nothing"


def fake_impl_from_observation(info: OpInfo) -> str:
    """A register_fake skeleton whose outputs follow the observed shapes (dims tied to inputs)."""
    c0 = info.calls[0]
    names = c0.arg_names
    qual = info.name.replace(".", "::", 1)
    sig = ", ".join(names)
    body: list[str] = []
    exprs = [_out_expr(i, info) for i in range(len(c0.outputs))]
    if not exprs:
        body.append("    return None  # writes only its mutated arguments")
    elif len(exprs) == 1:
        body.append(f"    return {exprs[0]}")
    else:
        body.append(f"    return ({', '.join(exprs)})")
    muts = [m for c in info.calls for m in c.mutated if m not in info.declared_mutable]
    note = f"  # also writes {', '.join(dict.fromkeys(muts))}: declare it in the schema / mutates_args" if muts else ""
    return f'@torch.library.register_fake("{qual}"){note}\ndef _{qual.split("::")[1]}_fake({sig}):\n' + "\n".join(body)


def _out_expr(i: int, info: OpInfo) -> str:
    calls = info.calls
    shape, dtype, _device, _ = calls[0].outputs[i]
    names = calls[0].arg_names
    tensors = [(n, a) for n, a in zip(names, calls[0].args) if isinstance(a, tuple) and a and a[0] == "tensor"]
    dt = dtype.replace("torch.", "torch.")
    # same shape as an input, in every observed call
    for n, a in tensors:
        j = names.index(n)
        if all(c.args[j][1] == c.outputs[i][0] for c in calls):
            return f"torch.empty_like({n})" if a[2] == dtype else f"torch.empty_like({n}, dtype={dt})"
    dims = []
    for d in range(len(shape)):
        dims.append(_dim_expr(i, d, info))
    base = tensors[0][0] if tensors else None
    tup = "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
    if base:
        same_dtype = tensors[0][1][2] == dtype
        return f"{base}.new_empty({tup}" + ("" if same_dtype else f", dtype={dt}") + ")"
    return f"torch.empty({tup}, dtype={dt})"


def _dim_expr(i: int, d: int, info: OpInfo) -> str:
    calls = info.calls
    names = calls[0].arg_names
    values = [c.outputs[i][0][d] for c in calls]
    for j, n in enumerate(names):
        a0 = calls[0].args[j]
        if isinstance(a0, tuple) and a0 and a0[0] == "tensor":
            for k in range(len(a0[1])):
                if all(len(c.args[j][1]) > k and c.args[j][1][k] == v for c, v in zip(calls, values)):
                    return f"{n}.shape[{k}]"
        elif isinstance(a0, int) and not isinstance(a0, bool):
            if all(c.args[j] == v for c, v in zip(calls, values)):
                return n
    return str(values[0])


def _call_sites(graphs: Sequence[Any], breaks: Sequence[Any], roots: Sequence[str]) -> dict[str, tuple[str, int]]:
    """Op name -> (file, line) of the user line that calls it (from graph nodes and breaks)."""
    from ..split import target_key

    sites: dict[str, tuple[str, int]] = {}
    for b in breaks:
        if b.op:
            sites.setdefault(b.op, (b.file, b.line))
    for g in graphs:
        for node in g.gm.graph.nodes:
            if node.op != "call_function":
                continue
            name = target_key(node.target)
            if name in sites:
                continue
            trace = node.meta.get("stack_trace") or ""
            frames = re.findall(r'File "([^"]+)", line (\d+)', trace)
            for file, line in reversed(frames):
                if is_user_file(file, roots):
                    sites[name] = (file, int(line))
                    break
    return sites


# ------------------------------------------------------------------------ opaque calls


def sglang_available() -> bool:
    """sglang's custom-op helpers import (then fixes use register_custom_op / register_split_op)."""
    import importlib.util

    try:  # the top-level package only: finding a submodule would import sglang (seconds)
        return importlib.util.find_spec("sglang") is not None
    except (ImportError, ValueError):
        return False


def wrapper_for_call(code: str, namespace: str = "mylib", sglang: bool = False) -> str:
    """A custom-op wrapper for an opaque library call on a source line ('h = lib.fn(x, w, eps=1e-6)').

    Tensor-ness of arguments is unknown from source alone: names are typed as tensors, literals
    keep their Python type. The fake impl mirrors the first argument; check it against the kernel.
    """
    try:
        tree = ast.parse(code.strip())
    except SyntaxError:
        return ""
    call = next((n for n in ast.walk(tree) if isinstance(n, ast.Call)), None)
    if call is None:
        return ""
    fn = ast.unparse(call.func)
    short = fn.split(".")[-1]
    params, forward = [], []
    for i, a in enumerate(call.args):
        name = _param_name(a, i)
        params.append((name, _py_type(a)))
        forward.append(name)
    for kw in call.keywords:
        if kw.arg is None:
            continue
        params.append((kw.arg, _py_type(kw.value)))
        forward.append(f"{kw.arg}={kw.arg}")
    sig = ", ".join(f"{n}: {t}" for n, t in params)
    names = ", ".join(n for n, _ in params)
    first = next((n for n, t in params if t == "torch.Tensor"), params[0][0] if params else "")
    call_site = code.strip().replace(fn + "(", f"{short}_op(", 1)
    if sglang:
        return (
            "from sglang.srt.utils.custom_op import register_custom_op\n"
            "# from sglang.srt.compilation.compilation_config import register_split_op  (if it must stay eager)\n\n\n"
            f"def _{short}_fake({names}):\n"
            f"    return torch.empty_like({first})  # the kernel's output shape/dtype\n\n\n"
            f"# @register_split_op()\n"
            f"@register_custom_op(mutates_args=[], fake_impl=_{short}_fake)  # list the arguments it writes to\n"
            f"def {short}_op({sig}) -> torch.Tensor:\n"
            f"    return {fn}({', '.join(forward)})\n\n\n"
            f"# at the call site (torch.ops.sglang.{short}_op):\n# {call_site}\n"
        )
    return (
        f'@torch.library.custom_op("{namespace}::{short}", mutates_args=())  # list the arguments it writes to\n'
        f"def {short}_op({sig}) -> torch.Tensor:\n"
        f"    return {fn}({', '.join(forward)})\n\n\n"
        f"@{short}_op.register_fake\n"
        f"def _({names}):\n"
        f"    return torch.empty_like({first})  # the kernel's output shape/dtype\n\n\n"
        f"# at the call site:\n# {call_site}\n"
    )


def _param_name(node: ast.AST, i: int) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return f"arg{i}"


def _py_type(node: ast.AST) -> str:
    if isinstance(node, ast.Constant):
        return type(node.value).__name__ if node.value is not None else "Optional[torch.Tensor]"
    return "torch.Tensor"
