"""Audit of registered custom ops (``pcg-inspect ops``): what Dynamo will know of each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from .options import TraceOptions
    from .report import Report


@dataclass(frozen=True)
class OpRow:
    name: str
    schema: str
    has_fake: bool
    mutates: tuple[str, ...]
    is_split: bool


def audit(namespaces: Sequence[str]) -> list[OpRow]:
    """Every op registered under the namespaces, with its fake-kernel and mutation facts."""
    from . import _torch_compat as compat
    from .opnames import normalise_op_name
    from .split import sglang_split_ops

    if "sglang" in namespaces:
        try:  # importing sglang's layers registers its ops
            import sglang.srt.layers  # type: ignore[import-not-found]  # noqa: F401
        except Exception:
            pass
    split = {normalise_op_name(n) for n in sglang_split_ops()[0]}
    if "pcg_inspect" in namespaces:
        try:
            from .models import attention as _  # noqa: F401

            split.add("pcg_inspect.attention")
        except Exception:
            pass
    rows = []
    for ns in namespaces:
        for qualname in compat.registered_ops(ns):
            packet = compat.resolve_op(qualname)
            if packet is None:
                continue
            for overload_name in packet.overloads():
                ov = getattr(packet, overload_name)
                mutates = compat.mutable_args(ov)
                name = qualname.replace("::", ".") + ("" if overload_name == "default" else f".{overload_name}")
                rows.append(OpRow(name, compat.schema_text(ov), compat.has_fake_kernel(ov), mutates, name in split))
    return sorted(rows, key=lambda r: r.name)


NOT_CUSTOM = frozenset({"aten", "prims", "_operator", "operator", "builtins", "torch", "math", "_c10d_functional",
                        "c10d_functional", "quantized", "profiler", "inductor", "higher_order"})


def called_namespaces(report: "Report") -> tuple[str, ...]:
    """Namespaces of the custom ops a traced target calls: in its graphs, its breaks and its findings."""
    names: set[str] = {f.op for f in report.findings if f.op} | {b.op for b in report.graph_breaks if b.op}
    names |= {op for g in report.graphs for op in g.ops}
    found = {n.replace("::", ".").split(".")[0] for n in names if "." in n.replace("::", ".") and not n.startswith(".")}
    return tuple(sorted(ns for ns in found if ns.isidentifier() and ns not in NOT_CUSTOM))


def audit_target(options: "TraceOptions", namespaces: Sequence[str]) -> list[OpRow]:
    """Run in a child: trace the target (no replay) so every op it registers and calls is known, then audit the
    given namespaces and every namespace the target calls ops from."""
    import dataclasses

    from .options import RunContext
    from .pipeline import run

    report = run(dataclasses.replace(options, replay=False), RunContext()).report
    return audit(tuple(dict.fromkeys([*namespaces, *called_namespaces(report)])))
