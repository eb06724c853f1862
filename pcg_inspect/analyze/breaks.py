"""Graph breaks: classify each one for PCG, find the line to edit, write the fix, deduplicate."""

from __future__ import annotations

import re
from typing import Optional, Sequence

from .. import _torch_compat as compat
from ..report import Frame, GraphBreak
from .fixes import data_ptr_fix, eager_only_fix, fake_impl_skeleton
from ..frames import library_entry, library_frame, to_frames, user_frame

CATEGORIES = (
    "data_ptr",
    "missing_fake_impl",
    "opaque_call",
    "host_call",
    "data_dependent",
    "side_effect",
    "unsupported_python",
    "other",
)

# Strong signals in the user's own source line decide first: a break is categorised by its cause,
# not by the surface exception Dynamo raised there (arithmetic on data_ptr() values raises a
# TypeError inside Dynamo, reported as "Observed exception").
_SOURCE_RULES: tuple[tuple[str, str], ...] = (
    ("data_ptr", r"\.data_ptr\(\)"),
    ("side_effect", r"(^|[^\w.])print\(|\bwarnings\.warn\(|\b(log|logger|logging)\.(debug|info|warning|warn|error|exception|critical)\("),
)

_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("data_ptr", ("data pointer", "data_ptr", "dataptrvariable")),
    ("missing_fake_impl", ("fake tensor", "fake impl", "meta kernel", "no fake", "register_fake", "abstract impl",
                           "unsupportedfaketensorexception", "running fx node")),
    ("side_effect", ("logging", "logger", "builtin operator `print`", "builtin print", "_warnings.warn", "warnings.warn",
                     "side effect")),
    ("data_dependent", ("data-dependent", "data dependent", "tensor.item", "dynamic shape operator", "guardondatadependent",
                        "could not guard on", "unbacked", "tolist")),
    ("host_call", ("returned non-tensor", "import failure")),
    ("unsupported_python", ("deepcopy", "non-constant key", "context manager", "generator", "unsupported method",
                            "unsupported python", "try/except")),
    ("opaque_call", ("marked as skipped", "skipped function", "non-tensor", "pybind", "c function", "builtin_function_or_method",
                     "unsupported function", "failed to trace builtin", "posix", "subprocess", "threading",
                     "compiler.disable", "disabled function")),
    ("unsupported_python", ("exception", "unsupported")),
)

_HINTS = {
    "data_ptr": (
        "Reading an address breaks capture (and a captured graph would bake it in): run the check "
        "only in eager with `not torch.compiler.is_compiling() and ...`; an address used in arithmetic must be "
        "computed outside the compiled forward and passed in."
    ),
    "missing_fake_impl": (
        "Register the op with a fake impl so Dynamo can trace it as one node "
        "(torch.library.register_fake, or sglang's register_custom_op(..., fake_impl=...))."
    ),
    "opaque_call": (
        "Dynamo cannot see inside this call into compiled code: wrap it as a custom op with mutates_args and a "
        "fake impl (register_custom_op), so the graph holds it as one node."
    ),
    "host_call": (
        "A host-side query or helper in forward (a device/memory query, a platform probe, a stdlib helper, an import): "
        "hoist it out of forward — compute it once in __init__ or at module import and keep the result."
    ),
    "data_dependent": (
        "A branch on tensor values cannot be captured: decide it outside the captured region "
        "(a Python flag set before forward, as sglang forces one attention path under PCG), "
        "or make it branch-free with torch.where."
    ),
    "side_effect": (
        "Logging, printing or warning in forward breaks the graph: delete it, or run it only in eager "
        "with `if not torch.compiler.is_compiling():`."
    ),
    "unsupported_python": (
        "Dynamo cannot trace this Python construct: rewrite it with tensor ops (e.g. x.clone() for copy.deepcopy, "
        "torch.stack + argsort for sorting by tensor values), or move it out of the compiled forward."
    ),
    "other": "See the torch graph-break page for this type; under fullgraph=True it stops capture.",
}


def categorise(gb_type: str, message: str, code: str = "", frames: Sequence[Frame] = ()) -> str:
    """PCG category of a graph break: the user's source line first, then Dynamo's type, then its message."""
    for category, pattern in _SOURCE_RULES:
        if code and re.search(pattern, code):
            return category
    for text in (gb_type.lower(), message.lower()):
        for category, needles in _RULES:
            if any(n in text for n in needles):
                return "host_call" if category == "opaque_call" and _calls_host_code(message, frames) else category
    return "other"


def _calls_host_code(message: str, frames: Sequence[Frame]) -> bool:
    """A skipped call into the standard library or torch's host API (to hoist), not into a kernel library (to wrap).

    The library the user's code called decides: a third-party package (flashinfer, whose JIT loader
    reaches threading and os.stat) is a kernel call; the user's own code calling the stdlib is host code.
    """
    import sys

    entry = library_entry(frames)
    if entry is not None:
        return _is_stdlib(entry.file)
    m = re.search(r"module: ([\w.]+)|builtin `([\w.]+)", message)
    modules = {n.split(".")[0] for n in (g for g in (m.groups() if m else ()) if g)}
    stdlib = set(getattr(sys, "stdlib_module_names", ()))
    return bool(modules & stdlib or {m.lstrip("_") for m in modules} & stdlib)


def _is_stdlib(path: str) -> bool:
    import sysconfig

    stdlib = sysconfig.get_paths().get("stdlib", "")
    return bool(stdlib) and path.startswith(stdlib) and "site-packages" not in path


def op_from_message(message: str) -> str:
    """The op a missing-fake break names ('toy.nofake', 'toy2::nf'), '' if none."""
    for pat in (
        r"unsupported operator:\s*([\w]+\.[\w]+)(?:\.[\w]+)?",
        r"CustomOpDef\(([\w]+::[\w]+)\)",
        r"([\w]+::[\w]+)(?:\.[\w]+)?: attempted to run this operator with Meta tensors",
        r"operator ([\w]+::[\w]+)",
        r"call_function (?!aten\.|prims\.)([\w]+\.[\w]+)\.[\w]+\(",
    ):
        m = re.search(pat, message)
        if m:
            return m.group(1).replace("::", ".")
    return ""


def build_breaks(
    raw: Sequence[compat.RawBreak],
    sizes: dict[int, Optional[int]],
    roots: Sequence[str],
) -> list[GraphBreak]:
    """Turn raw Dynamo events into deduplicated GraphBreak records, in first-seen order.

    A break in a submodule is logged once while Dynamo inlines it into the caller's frame and
    again when the submodule's own frame is traced: both point at the same user line.
    """
    merged: dict[tuple[str, str, str, int], dict] = {}
    last_key: Optional[tuple[str, str, str, int]] = None
    for i, rb in enumerate(raw):
        frames = to_frames(rb.frames, roots)
        uf = user_frame(frames)
        parts = compat.split_unsupported_message(rb.message)
        gb_type = rb.gb_type if rb.exc_type == "Unsupported" else (parts["gb_type"] or rb.gb_type)
        category = categorise(gb_type, rb.message, uf.code if uf else "", frames)
        # One entry per line to edit: a library call that breaks in several places inside the
        # library (flashinfer's JIT loader) is one problem at the user's call.
        key = (category, "", uf.file if uf else "", uf.line if uf else 0)
        if uf is None and last_key is not None:
            # A library function Dynamo compiled as its own frame after the user's call broke
            # (flashinfer's loader): the same problem, already reported at the user's line.
            key = last_key
        elif uf is not None:
            last_key = key
        size = sizes.get(i)
        if key in merged:
            entry = merged[key]
            entry["occurrences"] += 1
            if size is not None and size not in entry["sizes"]:
                entry["sizes"].append(size)
            if len(frames) > len(entry["frames"]):
                entry["frames"] = frames
            continue
        merged[key] = {
            "raw": rb,
            "category": category,
            "gb_type": gb_type,
            "parts": parts,
            "frames": frames,
            "uf": uf,
            "occurrences": 1,
            "sizes": [size] if size is not None else [],
        }
    out = []
    for entry in merged.values():
        out.append(_to_break(entry))
    return out


def _to_break(entry: dict) -> GraphBreak:
    rb: compat.RawBreak = entry["raw"]
    uf: Optional[Frame] = entry["uf"]
    category = entry["category"]
    parts = entry["parts"]
    gb_id, url = compat.graph_break_id(entry["gb_type"]) if rb.exc_type == "Unsupported" else ("", "")
    reason = parts["explanation"] or (entry["gb_type"] if parts["context"] else _first_line(rb.message)) or rb.gb_type
    if parts["context"] and parts["context"] not in reason:
        reason = f"{reason} ({parts['context']})"
    if rb.hard:
        reason = f"{rb.exc_type}: {_first_line(rb.message)} — Dynamo gave up on the whole frame"
    op = op_from_message(rb.message) if category == "missing_fake_impl" else ""
    code = uf.code if uf else ""
    hint, fix = _HINTS[category], ""
    if category == "data_ptr":
        fix = data_ptr_fix(code)
    elif category == "side_effect":
        fix = eager_only_fix(code)
    elif category == "missing_fake_impl" and op:
        hint, fix = _missing_fake_advice(op)
    elif "constraints violated" in rb.message.lower() or "as dynamic but your code specialized" in rb.message:
        hint, fix = _constraint_hint(rb.message), ""
    elif category == "opaque_call" and uf is not None and entry["frames"] and not entry["frames"][-1].is_user:
        lib = library_frame(entry["frames"])
        hint = f"Dynamo followed this call into library code ({lib.file}:{lib.line}) it cannot trace: " + _HINTS[category]
    return GraphBreak(
        category=category,
        reason=reason,
        gb_type=entry["gb_type"],
        gb_id=gb_id,
        doc_url=url,
        file=uf.file if uf else "",
        line=uf.line if uf else 0,
        function=uf.function if uf else "",
        code=code,
        user_stack=entry["frames"],
        hint=hint,
        fix=fix,
        op=op,
        capture_sizes=tuple(sorted(entry["sizes"])),
        occurrences=entry["occurrences"],
        fatal=rb.hard,
    )


def _missing_fake_advice(op: str) -> tuple[str, str]:
    packet = compat.resolve_op(op)
    overload = compat.default_overload(packet) if packet is not None else None
    if overload is not None and compat.has_fake_kernel(overload):
        return (f"`{op}` has a fake impl, but it raises on these inputs: Dynamo cannot trace the call. Make the fake "
                "return empty tensors shaped like the kernel's outputs (below, replace your fake's body).", "")
    return f"`{op}` has no fake/meta kernel: register one so Dynamo can trace it as one node.", fake_impl_skeleton(op)


def _constraint_hint(message: str) -> str:
    # "You marked L['x'].size()[0] as dynamic but your code specialized it to be a constant (8)"
    m = re.search(r"You marked (L\['(?P<name>[^']+)'\][^ ]*?\.size\(\)\[(?P<dim>\d+)\]) as dynamic but your code specialized it to be a constant \((?P<value>[^)]+)\)", message)
    if m:
        what = f"input `{m.group('name')}` dim {m.group('dim')}"
        return (
            f"{what} was marked dynamic (mark_dynamic) but this line specialised it to {m.group('value')}: do not branch on "
            "the token count, mark every input carrying the token dim together (an unmarked rotary cos/sin with the same dim "
            "does this), or use maybe_mark_dynamic as sglang does."
        )
    return (
        "A dim marked dynamic was specialised: mark every input that carries the token dim together, do not branch on "
        "it, or use maybe_mark_dynamic as sglang does (TORCH_LOGS=+dynamic shows where)."
    )


def _first_line(text: str) -> str:
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()[:300]
    return ""
