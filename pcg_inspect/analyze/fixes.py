"""Paste-ready fixes derived from the user's own source line or the op's schema."""

from __future__ import annotations

import re

from .. import _torch_compat as compat


def data_ptr_fix(code: str) -> str:
    """Rewrite an ``if <cond using data_ptr>:`` line so the comparison runs only in eager."""
    m = re.match(r"^(\s*)(if|elif|while)\s+(.*?):\s*(#.*)?$", code)
    if m:
        cond = m.group(3).strip()
        return f"{m.group(2)} not torch.compiler.is_compiling() and ({cond}):"
    m = re.match(r"^(.*?)=\s*(.*data_ptr\(\).*)$", code)
    if m and re.search(r"==|!=|\bis\b", m.group(2)):  # a flag from comparing addresses: False under compile
        return f"{m.group(1).rstrip()} = (not torch.compiler.is_compiling()) and ({m.group(2).strip()})"
    return ""  # an address used as a value: the user decides where to compute it


def eager_only_fix(code: str) -> str:
    """Wrap a side-effect statement so it runs only in eager."""
    stmt = code.strip()
    if not stmt:
        return ""
    return f"if not torch.compiler.is_compiling():\n    {stmt}"


_PY_TYPES = {"Tensor": "torch.Tensor", "int": "int", "float": "float", "bool": "bool", "SymInt": "int"}


def fake_impl_skeleton(op: str) -> str:
    """A ``torch.library.register_fake`` skeleton for ``op`` ('ns.op'), arguments from its schema.

    The body returns ``torch.empty_like`` of the first tensor argument; observed shapes refine it
    (see the unregistered_op finding).
    """
    packet = compat.resolve_op(op)
    qual = op.replace(".", "::", 1)
    args: list[str] = []
    first_tensor = ""
    returns = "Tensor"
    if packet is not None:
        overload = compat.default_overload(packet)
        if overload is not None:
            args = compat.argument_names(overload)
            first_tensor = next(iter(compat.tensor_args(overload)), "")
            returns = "()" if compat.returns_nothing(overload) else "Tensor"
    sig = ", ".join(args) or "*args"
    if returns in ("()", ""):
        body = "    return None  # the op returns nothing; it only writes its mutated arguments"
    elif first_tensor:
        body = f"    return torch.empty_like({first_tensor})  # match the real kernel's output shape/dtype"
    else:
        body = "    raise NotImplementedError  # return empty tensors shaped like the real outputs"
    return f'@torch.library.register_fake("{qual}")\ndef _{qual.split("::")[1]}_fake({sig}):\n{body}'
