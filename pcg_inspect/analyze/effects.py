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
from typing import Any, Optional, Sequence

from ..fingerprint import Key
from ..frames import is_user_file, source_line


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
