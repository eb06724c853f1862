"""Ops under PCG: what the eager observation says about each custom op, as findings at the calling line.

For each non-aten op the target called (seen at the dispatcher, so C++ extension ops count):
- ``unregistered_op``: no fake/meta kernel. Dynamo breaks on it (or, for an op that returns
  nothing, records it blind). A fake impl is derived from the shapes observed at two sizes.
- ``fake_impl_mismatch``: the fake impl's output shape/dtype/device differs from the kernel's.
- ``undeclared_mutation``: the kernel wrote to an argument its schema does not mark mutable
  (values compared before/after, so ``.data`` writes count too).
- ``output_aliases_input``: an output shares storage with an input.
"""

from __future__ import annotations

import ast
from typing import Any, Optional, Sequence

from ..details import OpDetails
from ..frames import is_user_file, node_user_location, source_line
from ..report import Finding
from ..opnames import target_key
from .observe import Observation, OpInfo


# ------------------------------------------------------------------------ findings


def op_findings(obs: Observation, graphs: Sequence[Any], breaks: Sequence[Any], reached: set[tuple[str, int]],
                roots: Sequence[str]) -> list[Finding]:
    """Findings for the observed ops, each at the user line that calls the op.

    Only ops the engine meets count: an op in a captured graph, an op a graph break names, or an
    op called from a line Dynamo never reached or broke at (a fatal break on a line abandons the rest of it).
    An op seen only in the eager run at a line Dynamo traced was replaced by Dynamo (a c10d collective
    becomes a functional collective): no finding.
    """
    sites = _call_sites(graphs, breaks, roots)
    in_graphs = {target_key(n.target) for g in graphs for n in g.gm.graph.nodes if n.op == "call_function"}
    named = {b.op for b in breaks if b.op}
    broke_at = {(b.file, b.line) for b in breaks}
    out: list[Finding] = []
    for name, info in obs.ops.items():
        eager_site = info.sites[0] if info.sites else ("", 0)
        unreached = bool(eager_site[0]) and (eager_site not in reached or eager_site in broke_at)
        if not info.calls or not (name in in_graphs or name in named or unreached):
            continue
        file, line = sites.get(name) or eager_site
        at = dict(file=file, line=line, code=source_line(file, line), op=name)
        if not info.has_fake:
            out.append(_unregistered(info, at))
        out += _mutation_findings(info, at)
        dropped = _dropped_defaults(info)
        if dropped:
            out.append(_dropped_default_finding(info, dropped, at))
            continue
        mism = None if name in named else _fake_mismatch(info)  # a fake that raises is the break itself
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
    written = {m for call in info.calls for m in call.mutated}
    unused = [m for m in info.declared_mutable if m not in written]
    if info.mutates_unknown or unused:
        out.append(_overdeclared(info, unused, at))
    if c.aliased:
        how = (f"returns a view of its input ({' or '.join(c.aliased)}): torch.library.custom_op refuses it, so the eager "
               "forward fails" if c.alias_refused else
               f"returns a tensor that shares storage with its input {', '.join(c.aliased)}")
        out.append(Finding(
            kind="output_aliases_input", severity="error",
            message=f"{_qual(info)} {how}: custom ops must return fresh tensors; a captured graph that reuses the input "
            "buffer sees the alias change",
            hint="Return a copy (.clone()) in the branch that returns the view, or write into a declared mutable output "
            "argument instead.",
            details=_details(info), **at,
        ))
    return out


def _overdeclared(info: OpInfo, unused: list[str], at: dict[str, Any]) -> Finding:
    if info.mutates_unknown:
        return Finding(
            kind="overdeclared_mutation", severity="error",
            message=f'{_qual(info)} is declared with mutates_args="unknown": every argument counts as written, so '
            "functionalization wraps each call in auto_functionalized copies and the graph cannot be lowered cleanly "
            "(ROCm/aiter 2780: `auto_functionalized_v2 was not removed`)",
            hint="List exactly the arguments the kernel writes: mutates_args=(" + ", ".join(repr(m) for m in sorted({m for c in info.calls for m in c.mutated})) + ",)"
            if any(c.mutated for c in info.calls) else "List exactly the arguments the kernel writes: mutates_args=() when it writes none.",
            details=_details(info), **at,
        )
    return Finding(
        kind="overdeclared_mutation", severity="warning",
        message=f"{_qual(info)} declares {', '.join(unused)} mutable but never wrote it in the observed calls: "
        "functionalization copies it at every call for nothing",
        hint="Drop it from mutates_args (schema 'Tensor name' instead of 'Tensor(a!) name') if the kernel never writes "
        "it; keep it if it writes it only on paths these inputs did not take.",
        details=_details(info), **at,
    )


def _dropped_defaults(info: OpInfo) -> list[str]:
    """Arguments the callers left to the schema default that the fake impl's signature requires."""
    import re

    out: list[str] = []
    for c in info.calls:
        if c.fake_outputs is None and "required" in c.fake_error and "argument" in c.fake_error:
            out += [n for n in re.findall(r"'(\w+)'", c.fake_error.split("argument", 1)[1]) if n in c.omitted and n in info.defaults]
    return list(dict.fromkeys(out))


def _dropped_default_finding(info: OpInfo, dropped: list[str], at: dict[str, Any]) -> Finding:
    import inspect

    from .. import _torch_compat as compat

    fn = compat.fake_function(info.overload)
    try:
        file, line = inspect.getsourcefile(fn) or "", inspect.getsourcelines(fn)[1]
        line += next((i for i, ln in enumerate(inspect.getsourcelines(fn)[0]) if ln.lstrip().startswith("def ")), 0)
    except (OSError, TypeError):
        file, line = at["file"], at["line"]
    defaults = ", ".join(f"{n}={info.defaults[n]!r}" for n in dropped)
    calls = ", ".join(f"{f.rsplit('/', 1)[-1]}:{ln}" for f, ln in info.sites if f) or "the calls"
    return Finding(
        kind="fake_impl_mismatch", severity="error", op=info.name, file=file, line=line, code=source_line(file, line),
        message=f"the fake impl of {_qual(info)} drops the schema default {defaults}: the calls that omit it ({calls}) "
                "raise in the fake under fullgraph=True, though eager runs",
        hint=f"Give the fake the schema's defaults ({defaults}), as below.",
        fix=fake_impl_from_observation(info), details=_details(info),
    )


def _details(info: OpInfo) -> OpDetails:
    c = info.calls[0]
    return OpDetails(
        observed_inputs={n: (list(a[1]) if isinstance(a, tuple) and a and a[0] == "tensor" else repr(a)) for n, a in zip(c.arg_names, c.args)},
        observed_outputs=tuple(tuple(o[0]) for o in c.outputs),
        mutated=tuple(c.mutated),
        declared_mutable=tuple(info.declared_mutable),
        aliased=tuple(c.aliased),
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
            if not same_strides(f[0], f[3], r[3]) or f[4] != r[4]:  # Inductor's assert_size_stride, a later view
                return (_fmt_outs([f], layout=True), _fmt_outs([r], layout=True))
    return None


def same_strides(shape: Sequence[int], a: Sequence[int], b: Sequence[int]) -> bool:
    """Equal strides where they matter (a dim of size 0 or 1 can have any stride)."""
    return all(x == y for n, x, y in zip(shape, a, b) if n > 1)


def _fmt_outs(outs: Sequence[tuple], layout: bool = False) -> str:
    def one(o: tuple) -> str:
        where = f" strides ({', '.join(map(str, o[3]))}" + (f", offset {o[4]})" if o[4] else ")") if layout else ""
        return f"[{', '.join(map(str, o[0]))}] {o[1].replace('torch.', '')} on {o[2]}{where}"

    return ", ".join(one(o) for o in outs) or "nothing"


def fake_impl_from_observation(info: OpInfo) -> str:
    """A register_fake skeleton whose outputs follow the observed shapes (dims tied to inputs)."""
    c0 = info.calls[0]
    names = c0.arg_names
    qual = info.name.replace(".", "::", 1)
    sig = ", ".join(f"{n}={info.defaults[n]!r}" if n in info.defaults else n for n in names)
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
    shape, dtype, _device, stride, offset = calls[0].outputs[i]
    names = calls[0].arg_names
    tensors = [(n, a) for n, a in zip(names, calls[0].args) if isinstance(a, tuple) and a and a[0] == "tensor"]
    dt = dtype.replace("torch.", "torch.")
    # same shape and layout as an input, in every observed call (empty_like keeps a dense input's strides)
    for n, a in tensors:
        j = names.index(n)
        if all(c.args[j][1] == c.outputs[i][0] and same_strides(c.outputs[i][0], c.args[j][4], c.outputs[i][3])
               and not c.outputs[i][4] for c in calls):
            return f"torch.empty_like({n})" if a[2] == dtype else f"torch.empty_like({n}, dtype={dt})"
    dims = [_dim_expr(i, d, info) for d in range(len(shape))]
    order = dense_order(shape, stride)
    note = "" if order is not None and not offset else f"  # the kernel's strides are ({', '.join(map(str, stride))}): match them"
    order = order if order is not None else tuple(range(len(dims)))
    laid = [dims[d] for d in order]
    tup = "(" + ", ".join(laid) + ("," if len(laid) == 1 else "") + ")"
    permute = "" if order == tuple(range(len(dims))) else f".permute({', '.join(str(order.index(d)) for d in range(len(dims)))})"
    base = tensors[0][0] if tensors else None
    if base:
        same_dtype = tensors[0][1][2] == dtype
        return f"{base}.new_empty({tup}" + ("" if same_dtype else f", dtype={dt}") + f"){permute}{note}"
    return f"torch.empty({tup}, dtype={dt}){permute}{note}"


def dense_order(shape: Sequence[int], stride: Sequence[int]) -> Optional[tuple[int, ...]]:
    """The dims from outermost to innermost of a dense tensor laid out as a permutation of a contiguous one
    (``(0, 1, ...)`` when contiguous); None when it has gaps or overlaps."""
    identity = tuple(range(len(shape)))
    contiguous, expected = [], 1
    for d in reversed(identity):
        contiguous.append(shape[d] <= 1 or stride[d] == expected)
        expected *= shape[d]
    if all(contiguous):
        return identity
    order = tuple(sorted(identity, key=lambda d: (-stride[d] if shape[d] > 1 else 0, d)))
    expected = 1
    for d in reversed(order):
        if shape[d] > 1 and stride[d] != expected:
            return None
        expected *= shape[d]
    return order


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
    """Op name -> (file, line) of the user line that calls it (from breaks, then graph nodes)."""
    sites: dict[str, tuple[str, int]] = {b.op: (b.file, b.line) for b in reversed(list(breaks)) if b.op}
    for g in graphs:
        for node in g.gm.graph.nodes:
            if node.op == "call_function":
                name = target_key(node.target)
                if name not in sites:
                    file, line = node_user_location(node, roots)
                    if file and is_user_file(file, roots):
                        sites[name] = (file, line)
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
