"""Module and Python state that a captured graph bakes in.

- ``buffer_assignment``: forward rebinds a module buffer or tensor attribute
  (``self.cos_sin_cache = self.cos_sin_cache.to(dtype)``). Dynamo writes a graph output back into the
  module after the graph, which vLLM rejects under CUDA graphs and which changes state between
  capture and replay. Found in the source of the methods Dynamo ran (``self.X = ...`` where X is a
  buffer, parameter or tensor attribute of that class's modules) and in the eager run (an attribute
  whose tensor changed identity).
- ``python_state_guard`` from the guard list: a guard on a global (a per-batch context flag) pins one
  value into the captured graph, even when no recompile happened during the trace. A module's own
  attributes are mostly configuration (``sliding_window is None``): they are reported when one changes
  between calls (a recompile), not from the guard list, which would flag every config flag of a model.
"""

from __future__ import annotations

import ast
import inspect
import re
from functools import lru_cache
from typing import Any, Optional, Sequence

from ..details import BufferDetails, GuardDetails
from ..frames import is_user_file, source_line
from ..report import Finding
from .observe import Observation

_SCALARS = (bool, int, float, str, type(None))
_INTERNAL = ("__closure__", "__defaults__", "__dict__", "__mro__", "__builtins", "___", "__code__", "__globals__")


def buffer_findings(module: Any, obs: Optional[Observation], reached: set[tuple[str, int]], roots: Sequence[str]) -> list[Finding]:
    """buffer_assignment errors, one per (class, attribute)."""
    tensors = _tensor_names_by_class(module)
    found: dict[tuple[str, str], Finding] = {}
    for cls, (names, buffers) in tensors.items():
        for attr, file, line, method in _assignments(cls, reached, roots):
            if attr in names:
                found.setdefault((cls.__name__, attr), _finding(cls.__name__, attr, attr in buffers, file, line, method))
    for change in (obs.state_changes if obs else ()):
        key = (change.module, change.attribute)
        if key not in found:
            cls = next((c for c in tensors if c.__name__ == change.module), None)
            file, line = _forward_line(cls)
            found[key] = _finding(change.module, change.attribute, change.is_buffer, file, line, "forward")
    return list(found.values())


def _finding(cls: str, attr: str, is_buffer: bool, file: str, line: int, method: str) -> Finding:
    kind = "buffer" if is_buffer else "tensor attribute"
    return Finding(
        kind="buffer_assignment", severity="error",
        message=f"{cls}.{method} assigns the {kind} self.{attr}: Dynamo writes a graph output back into the module after "
        "the graph, which vLLM rejects under CUDA graphs (\"modifying buffers ... not allowed\") and which changes "
        "module state between capture and replay",
        file=file, line=line, function=method, code=source_line(file, line),
        hint=f"Use a local (e.g. `{attr} = self.{attr}.to(x.dtype)`) and keep self.{attr} unchanged; convert it once in "
        "__init__ or when the model is loaded.",
        details=BufferDetails(attribute=attr, module=cls, is_buffer=is_buffer),
    )


def _tensor_names_by_class(module: Any) -> dict[type, tuple[set[str], set[str]]]:
    import torch

    out: dict[type, tuple[set[str], set[str]]] = {}
    for m in module.modules():
        names, buffers = out.setdefault(type(m), (set(), set()))
        for name, _ in list(m.named_buffers(recurse=False)) + list(m.named_parameters(recurse=False)):
            names.add(name)
            buffers.add(name)
        names.update(k for k, v in vars(m).items() if isinstance(v, torch.Tensor) and not k.startswith("_"))
    return out


def _assignments(cls: type, reached: set[tuple[str, int]], roots: Sequence[str]) -> list[tuple[str, str, int, str]]:
    """(attribute, file, line, method) of each ``self.X = ...`` in a method of ``cls`` that Dynamo ran."""
    try:
        file = inspect.getsourcefile(cls) or ""
    except TypeError:
        return []
    if not file or not is_user_file(file, roots):
        return []
    lines = {ln for f, ln in reached if f == file}
    out = []
    for method in _methods(file, cls.__name__):
        if method.name == "__init__" or not any(method.lineno <= ln <= (method.end_lineno or method.lineno) for ln in lines):
            continue
        for node in ast.walk(method):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
            for t in targets:
                if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
                    out.append((t.attr, file, node.lineno, method.name))
    return out


@lru_cache(maxsize=64)
def _tree(file: str) -> Optional[ast.Module]:
    try:
        with open(file, encoding="utf-8") as fh:
            return ast.parse(fh.read())
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None


def _methods(file: str, class_name: str) -> list[ast.FunctionDef]:
    tree = _tree(file)
    if tree is None:
        return []
    classes = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == class_name]
    return [m for c in classes for m in c.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _forward_line(cls: Optional[type]) -> tuple[str, int]:
    try:
        fn = getattr(cls, "forward")
        return inspect.getsourcefile(fn) or "", inspect.getsourcelines(fn)[1]
    except (TypeError, OSError, AttributeError):
        return "", 0


def state_guard_findings(raw_guard_sets: Sequence[Any], reached: set[tuple[str, int]], roots: Sequence[str]) -> list[Finding]:
    """python_state_guard warnings for guards that pin a global Python value, each at the first traced line reading it."""
    seen: dict[str, Finding] = {}
    for gs in raw_guard_sets:
        code = gs.code
        for g in gs.guards:
            if g.source in seen:
                continue
            if _mutable_attribute(g):  # a module's list/dict: state, unlike its scalar config flags
                file, line = _reading_line(g.source, reached, roots)
                items = [e for e in gs.guards if e.source.startswith(g.source + "[") and e.type == "CONSTANT_MATCH"]
                seen[g.source] = _container_finding(g, items, file or (code.co_filename if code else ""),
                                                    line or (code.co_firstlineno if code else 0), code.co_name if code else "")
                continue
            if not _pins_python_value(g):
                continue
            file, line = _reading_line(g.source, reached, roots)
            if not file and code is not None:
                file, line = code.co_filename, code.co_firstlineno
            seen[g.source] = _guard_finding(g, file, line, code.co_name if code is not None else "")
    return list(seen.values())


def _reading_line(source: str, reached: set[tuple[str, int]], roots: Sequence[str]) -> tuple[str, int]:
    """The first traced user line that mentions the guarded name and its last key or attribute."""
    names = re.findall(r"\[['\"]([^'\"]+)['\"]\]|\.(\w+)|^(\w+)", source)
    parts = [a or b or c for a, b, c in names if (a or b or c) not in ("self", "L", "G")]
    if not parts:
        return "", 0
    first, last = parts[0], parts[-1]
    by_file: dict[str, set[int]] = {}
    for file, line in reached:
        if is_user_file(file, roots):
            by_file.setdefault(file, set()).add(line)
    for file in sorted(by_file):  # a branch on the value leaves no graph node: read the functions Dynamo ran
        for start, end in _functions_around(file, by_file[file]):
            for line in range(start, end + 1):
                text = source_line(file, line)
                if first in text and last in text:
                    return file, line
    return "", 0


def _functions_around(file: str, lines: set[int]) -> list[tuple[int, int]]:
    tree = _tree(file)
    if tree is None:
        return []
    spans = [(n.lineno, n.end_lineno or n.lineno) for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    inner = [(a, b) for a, b in spans if any(a <= ln <= b for ln in lines)]
    return sorted(inner, key=lambda s: s[1] - s[0])  # innermost first


def _pins_python_value(g: Any) -> bool:
    if g.type not in ("CONSTANT_MATCH", "EQUALS_MATCH", "ID_MATCH") or not g.has_value:
        return False
    if g.type == "ID_MATCH" and g.value not in (None, True, False):
        return False  # identity of a function, class or module: code, not state
    src = g.source
    if any(m in src for m in _INTERNAL) or src.startswith(("G['__", "G['torch']")) or src.endswith(".training"):
        return False  # Dynamo's own bookkeeping, closures and defaults of library code, torch itself
    # State held in a global object read in forward is per-batch context (sglang's forward context,
    # a server-args dict). A plain module-level constant (HEADS == 4) is configuration, and so are a
    # module's own attributes (sliding_window is None): those are reported only when one changes
    # between calls, as a recompile.
    if not g.is_global or not isinstance(g.value, _SCALARS):
        return False
    top = re.match(r"G\['(\w+)'\]$", src)
    if top is None:
        return True  # G['ctx'].flag, G['ARGS']['key']: a field of a shared object
    name = top.group(1)
    return isinstance(g.value, (bool, type(None))) and not name.isupper()  # a lowercase module-level flag


def _mutable_attribute(g: Any) -> bool:
    """A length guard on a list or dict held by a module (``len(self.scales) == 2``): Dynamo unrolled it."""
    return (g.type == "SEQUENCE_LENGTH" and not g.is_global and "self" in g.source
            and bool(re.search(r"type=<class '(list|dict)'>", g.code or "")))


def _container_finding(g: Any, items: Sequence[Any], file: str, line: int, function: str) -> Finding:
    kind = "dict" if "<class 'dict'>" in (g.code or "") else "list"
    length = re.search(r"len\([^)]*\) == (\d+)", g.code or "")
    values = ", ".join(repr(e.value) for e in items if e.has_value)
    what = f"{g.source} (a {kind}" + (f" of length {length.group(1)}" if length else "") + (f": [{values}]" if values else "") + ")"
    return _baked(f"the captured graph bakes in {what}: Dynamo unrolled it into the graph and guards on its length and "
                  "contents, so a change after capture (an append, a per-step update) recompiles or replays the captured "
                  "values",
                  "Keep it fixed from capture on (a tuple set in __init__ says so), or hold the values in a tensor buffer "
                  "the graph reads.", g.code or g.source, g.source, file, line, function)


def _guard_finding(g: Any, file: str, line: int, function: str) -> Finding:
    text = g.code or f"{g.source} == {g.value!r}"
    return _baked(f"the captured graph bakes a global in: {text}. Every capture size is compiled with this value; if it "
                  "differs at serving time the engine recompiles after capture or replays the path of the captured value",
                  "Keep it fixed from capture on (decide it before capture, as sglang forces one path under PCG), or pass "
                  "it as a tensor the graph reads instead of a Python value.", text, g.source, file, line, function)


def _baked(message: str, hint: str, guard: str, source: str, file: str, line: int, function: str) -> Finding:
    """A python_state_guard warning: Python state a captured graph holds as a constant."""
    return Finding(kind="python_state_guard", severity="warning", message=message, file=file, line=line,
                   function=function, code=source_line(file, line), hint=hint,
                   details=GuardDetails(guard=guard, cause="baked", source=source))
