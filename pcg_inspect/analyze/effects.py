"""Side effects of one forward call, eager vs compiled: what the compiled model silently drops.

A forward that branches on ``torch.compiler.is_compiling()`` (skip a hook, an activation capture, a
counter) computes the same tensors compiled and eager, with no graph break, and still differs: the
compiled model lacks a side effect the eager one has (pytorch 173452). Each side is fingerprinted
before and after one call at the same size: every module's plain attributes (scalars by value,
lists/dicts/sets by length, tensors by their sums), its buffers, and the list/dict/scalar globals of
the user's modules that define the target's classes. An effect the eager call has and the compiled
call lacks (or has with another size) is a ``compile_divergence``.
"""

from __future__ import annotations

import inspect
import re
import sys
from typing import Any, Optional, Sequence

from ..frames import is_user_file, source_line

Key = tuple[str, str, str]
"""('attr', module path, name) or ('global', module name, name)."""

_SCALARS = (bool, int, float, str, type(None))
_CONTAINERS = (list, dict, set)


def snapshot(module: Any, roots: Sequence[str]) -> dict[Key, Any]:
    """A fingerprint of every plain attribute, buffer and user global a forward can change."""
    import torch

    from .repro import digest

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


def divergence_findings(eager: Optional[dict[Key, str]], compiled: Optional[dict[Key, str]], module: Any,
                        roots: Sequence[str], tokens: Optional[int]) -> list[Any]:
    """compile_divergence: effects the eager call had and the compiled call did not (or had otherwise)."""
    from ..details import DivergenceDetails
    from ..report import Finding

    if eager is None or compiled is None:
        return []
    dropped = {k: v for k, v in eager.items() if compiled.get(k) != v}
    if not dropped:
        return []
    named = sorted(_name(k) for k in dropped)
    told = "; ".join(f"{_name(k)}: eager {v}, compiled {compiled.get(k, 'unchanged')}" for k, v in sorted(dropped.items()))
    file, line, branch = _is_compiling_line(module, dropped, roots)
    where = f"; the branch on torch.compiler.is_compiling() at {file.rsplit('/', 1)[-1]}:{line} skips it under compile" \
        if branch else ""
    at = f" at {tokens} tokens" if tokens else ""
    return [Finding(
        kind="compile_divergence", severity="error", file=file, line=line, code=source_line(file, line),
        message=f"the compiled forward drops a side effect the eager one has{at} ({told}){where}: no graph break, same "
                "tensors, and the served model silently differs from the one you tested",
        hint="Do not branch on is_compiling() around effects the model needs (hooks, activation capture, counters): "
             "keep them in forward for both, or move them out of the compiled region.",
        details=DivergenceDetails(tuple(named), branch),
    )]


def _name(key: Key) -> str:
    kind, owner, name = key
    if kind == "global":
        return f"{owner.rsplit('.', 1)[-1]}.{name}"
    return f"self.{owner + '.' if owner else ''}{name}"


_BRANCH = re.compile(r"\bis_compiling\(\)")


def _is_compiling_line(module: Any, dropped: dict[Key, str], roots: Sequence[str]) -> tuple[str, int, bool]:
    """The first ``is_compiling()`` line in the user's classes (the one owning a dropped attribute first); else the
    owner's forward."""
    owners = {k[1] for k in dropped if k[0] == "attr"}
    classes = []
    for path, m in module.named_modules():
        if type(m) not in [c for _, c in classes]:
            classes.append((path, type(m)))
    classes.sort(key=lambda pc: pc[0] not in owners)
    fallback: tuple[str, int] = ("", 0)
    for _, cls in classes:
        try:
            file = inspect.getsourcefile(cls) or ""
            lines, start = inspect.getsourcelines(cls)
        except (OSError, TypeError):
            continue
        if not is_user_file(file, roots):
            continue
        for i, text in enumerate(lines):
            if _BRANCH.search(text.split("#", 1)[0]):
                return file, start + i, True
        if not fallback[0]:
            try:
                fallback = (file, inspect.getsourcelines(cls.forward)[1])
            except (OSError, TypeError, AttributeError):
                pass
    return fallback[0], fallback[1], False
