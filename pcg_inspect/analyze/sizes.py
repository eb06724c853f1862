"""Totals known before forward: which shape expression equals a data-dependent size at every traced size.

``torch.repeat_interleave(x, repeats)`` with tensor repeats reads ``repeats.sum()`` on the host to size
its output. When the total is fixed by construction (every token picks ``top_k`` experts, so the
slots add up to ``topk_ids.numel()``), passing it as ``output_size=`` removes the host read. The eager
run evaluates, at each call, shape expressions over the calling frame's locals (tensor sizes, times
an int local, an int attribute of ``self`` or a small constant) and keeps those equal to the total;
an expression kept at every call and at two or more token counts is offered as the fix.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

MAX_CONSTANT = 64
"""The largest literal factor tried (top_k, heads per group, ...)."""


def equal_expressions(total: int, local_vars: dict[str, Any]) -> tuple[str, ...]:
    """Shape expressions over ``local_vars`` whose value is ``total``, simplest first."""
    bases = _bases(local_vars)
    ints = _ints(local_vars)
    out: list[str] = [expr for expr, v in bases if v == total]
    out += [f"{expr} * {name}" for expr, v in bases for name, k in ints if v * k == total]
    out += [f"{expr} * {total // v}" for expr, v in bases if v > 1 and total % v == 0 and 2 <= total // v <= MAX_CONSTANT]
    return tuple(dict.fromkeys(out))


def common_expression(seen: Sequence[tuple[Optional[int], tuple[str, ...]]]) -> str:
    """The first expression equal to the total at every call, when calls at two or more token counts agree."""
    if len({tokens for tokens, _ in seen}) < 2:
        return ""
    first = seen[0][1]
    return next((e for e in first if all(e in exprs for _, exprs in seen[1:])), "")


def with_keyword(code: str, function: str, keyword: str) -> str:
    """``code`` with ``keyword`` added as the last argument of the call to ``function`` on that line ('' if not there)."""
    start = code.find(function + "(")
    if start < 0:
        return ""
    depth = 0
    for i in range(start + len(function), len(code)):
        depth += {"(": 1, ")": -1}.get(code[i], 0)
        if depth == 0:
            inner = code[start + len(function) + 1:i].rstrip()
            sep = "" if not inner else " " if inner.endswith(",") else ", "
            return code[:start + len(function) + 1] + inner + sep + keyword + code[i:]
    return ""


def _bases(local_vars: dict[str, Any]) -> list[tuple[str, int]]:
    import torch

    out = []
    for name, value in local_vars.items():
        if not name.isidentifier() or not isinstance(value, torch.Tensor):
            continue
        try:
            out.append((f"{name}.numel()", int(value.numel())))
            out += [(f"{name}.shape[{i}]", int(d)) for i, d in enumerate(value.shape)]
        except Exception:  # a tensor subclass without concrete sizes
            continue
    return out


def _ints(local_vars: dict[str, Any]) -> list[tuple[str, int]]:
    out = [(n, v) for n, v in local_vars.items() if type(v) is int and v > 1 and n.isidentifier()]
    owner = local_vars.get("self")
    attributes = getattr(owner, "__dict__", {}) if owner is not None else {}
    out += [(f"self.{n}", v) for n, v in attributes.items() if type(v) is int and v > 1 and not n.startswith("_")]
    return out
