"""Op names as the engine spells them: one ground-floor helper set, for every stage that names an op.

sglang matches split ops by ``str(node.target)``; Dynamo records the same op as ``ns.op`` or
``ns.op.default`` depending on how it was called. Analysis (which runs before the split) and the
split itself use these, so neither imports the other.
"""

from __future__ import annotations

from typing import Any

from . import _torch_compat as compat
from .errors import UsageError


def normalise_op_name(name: str) -> str:
    """Canonical 'ns.op' (or 'ns.op.overload' for a non-default overload) from any spelling.

    Accepts 'ns::op', 'ns.op', 'ns.op.default', 'ns::op.default'.
    Raises:
        UsageError: no namespace or no op.
    """
    text = name.strip().replace("::", ".")
    parts = text.split(".")
    if len(parts) < 2 or not all(p.isidentifier() for p in parts) or len(parts) > 3:
        raise UsageError(f"split op {name!r} is not an op name; expected 'ns::op', 'ns.op' or 'ns.op.default'")
    if len(parts) == 3 and parts[2] == "default":
        parts = parts[:2]
    return ".".join(parts)


def target_key(target: Any) -> str:
    """The key a node's target matches split ops by: ``str(target)`` with '.default' dropped.

    Dynamo records ``torch.ops.ns.op(...)`` as the OpOverloadPacket ('ns.op') and
    ``torch.ops.ns.op.default(...)`` or a ``custom_op`` function as the OpOverload ('ns.op.default').
    """
    s = str(target)
    return s[: -len(".default")] if s.endswith(".default") else s


def op_label(node: Any) -> str:
    """Short readable op of a node: 'aten.mm', 'nsa.topk', 'linear', 'Linear', 'add'."""
    if node.op == "call_function":
        t = node.target
        if compat.is_op(t):
            return target_key(t)
        mod = getattr(t, "__module__", "") or ""
        name = getattr(t, "__name__", str(t))
        if mod.startswith("torch") or mod in ("_operator", "operator", "builtins"):
            return name
        return f"{mod}.{name}" if mod else name
    if node.op == "call_method":
        return f".{node.target}"
    if node.op == "call_module":
        return str(node.target)
    return str(node.target)
