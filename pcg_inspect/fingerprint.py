"""Fingerprints for comparing two calls: a tensor's float64 sums, and the state a forward can change.

``digest`` sums a tensor (and its magnitudes) in float64: equal inputs give equal digests, and a
difference that matters moves them. ``snapshot`` fingerprints a module's plain attributes (scalars by
value, lists/dicts/sets by length, tensors and buffers by digest) and the list/dict/scalar globals of
the user's modules that define its classes; ``delta`` says what one call changed.
"""

from __future__ import annotations

import inspect
import math
import sys
from typing import Any, Optional, Sequence

from .frames import is_user_file

Key = tuple[str, str, str]
"""('attr', module path, name) or ('global', module name, name)."""

_SCALARS = (bool, int, float, str, type(None))
_CONTAINERS = (list, dict, set)


def digest(t: Any) -> tuple[float, float]:
    import torch

    if t.numel() == 0 or t.is_meta:
        return (0.0, 0.0)
    if t.is_complex():
        t = torch.view_as_real(t)
    if t.dtype == torch.bool:
        t = t.to(torch.int64)
    if t.is_floating_point():
        total = float(t.detach().sum(dtype=torch.float64))
        magnitude = float(t.detach().abs().sum(dtype=torch.float64)) if math.isfinite(total) else math.inf
        return (total, magnitude)
    total = float(t.detach().sum(dtype=torch.int64))
    return (total, float(t.detach().abs().sum(dtype=torch.int64)))


def snapshot(module: Any, roots: Sequence[str]) -> dict[Key, Any]:
    """A fingerprint of every plain attribute, buffer and user global a forward can change."""
    import torch

    out: dict[Key, Any] = {}
    for path, m in module.named_modules():
        for name, value in vars(m).items():
            if name.startswith("_") or isinstance(value, torch.nn.Module):
                continue
            fp = _fingerprint(value, digest, torch)
            if fp is not None:
                out[("attr", path, name)] = fp
        for name, buf in m.named_buffers(recurse=False):
            out[("attr", path, name)] = ("tensor", digest(buf))
    for modname in _user_modules(module, roots):
        for name, value in list(vars(sys.modules[modname]).items()):
            if name.startswith("__") or inspect.ismodule(value) or callable(value):
                continue
            fp = _fingerprint(value, digest, torch) if isinstance(value, _SCALARS + _CONTAINERS) else None
            if fp is not None:
                out[("global", modname, name)] = fp
    return out


def _fingerprint(value: Any, digest: Any, torch: Any) -> Optional[tuple]:
    if isinstance(value, torch.Tensor):
        return ("tensor", digest(value)) if not value.is_meta else None
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return ("value", value)
    if isinstance(value, (int, float)):
        return ("number", value)
    if isinstance(value, _CONTAINERS):
        return ("length", len(value))
    return None


def _user_modules(module: Any, roots: Sequence[str]) -> list[str]:
    names = []
    for m in module.modules():
        modname = type(m).__module__
        mod = sys.modules.get(modname)
        file = getattr(mod, "__file__", "") or ""
        if mod is not None and is_user_file(file, roots) and modname not in names:
            names.append(modname)
    return names


def delta(before: dict[Key, Any], after: dict[Key, Any]) -> dict[Key, str]:
    """What one call changed, in words per key ('grew by 1', '+1', 'changed', 'set')."""
    out: dict[Key, str] = {}
    for key, now in after.items():
        was = before.get(key)
        if was is None:
            out[key] = "set"
        elif was != now:
            out[key] = _change(was, now)
    return out


def _change(was: tuple, now: tuple) -> str:
    if was[0] == now[0] == "length":
        n = now[1] - was[1]
        return f"grew by {n}" if n > 0 else f"shrank by {-n}"
    if was[0] == now[0] == "number" and not isinstance(now[1], bool):
        return f"{now[1] - was[1]:+g}"
    return "changed"
