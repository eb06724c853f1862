"""``pcg-inspect fix``: turn each finding's fix into a source edit, prove it by tracing the patched code.

1. trace the target (as ``trace`` does);
2. plan one edit per fixable problem (``plan``): guard a ``data_ptr()`` check or a print/log/warn
   with ``torch.compiler.is_compiling()``, register a fake impl next to the op's definition (or in a
   ``<target>_pcg_fakes.py`` the target imports), correct ``mutates_args``, replace a lying fake,
   hoist a constant host query to ``__init__``, keep a buffer assignment local; everything else is
   left for the user with the decision it needs;
3. apply the edits to copies (libcst: formatting and comments kept) and trace the patched target
   in a temporary copy of its folder, in a child process (the two versions register the same ops);
4. with ``write``: write the files in place, only if none changed since the trace, each atomically.
"""

from __future__ import annotations

import ast
import difflib
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

from .. import kinds as registry
from ..errors import TargetError, UsageError
from ..options import TraceOptions
from ..report import Report
from .edits import Unfixable, add_keyword, ensure_import, guard_condition, guard_statement, hoist_call, insert_after_statement, \
    localise_attribute, replace_named_function, mark_schema_mutable, replace_function, set_mutates_args


@dataclass
class Edit:
    """One planned edit of one file."""

    file: str
    line: int
    what: str
    edit: Callable[[str], str]
    key: tuple = ()


@dataclass(frozen=True)
class Left:
    """A problem not fixed automatically, and why (the decision it needs)."""

    title: str
    file: str
    line: int
    why: str


@dataclass
class FixResult:
    """What ``fix`` did."""

    before: Report
    after: Optional[Report]
    diff: str
    """Unified diff of every edit."""
    fixed: list[str]
    left: list[Left]
    written: list[str] = field(default_factory=list)
    new_files: dict[str, str] = field(default_factory=dict)
    """Path -> text of every file the edits touch or create."""
    broken: list[str] = field(default_factory=list)
    """Edits that made the patched copy fail to import or trace ('what: error'): bugs in pcg-inspect, left out."""


def run_fix(options: TraceOptions, write: bool = False, progress: Optional[Callable[[str], None]] = None) -> FixResult:
    """Trace, plan, patch a copy, re-trace it; with ``write`` patch the files in place.

    Raises:
        UsageError: not a file target, or the files changed since the trace (``write``).
    """
    from .. import run as runner

    target_file, factory = _file_target(options.target)
    started = time.time()
    before = runner.trace(options, progress)
    changes, left = plan(before, target_file)
    texts, fixed, unfixable = apply(changes)
    left += unfixable
    result = FixResult(before, None, _unified(texts), fixed, left, new_files=texts)
    if texts:
        if progress:
            progress("tracing the patched copy")
        try:
            result.after = _trace_patched(target_file, factory, texts, options)
        except TargetError as exc:  # an edit of ours broke the file: find it, keep the others
            result = _without_broken_edit(result, changes, exc, target_file, factory, options)
            texts = result.new_files
    if write and texts:
        result.written = _write(texts, started)
    return result


def _without_broken_edit(result: FixResult, changes: list[Edit], error: Exception, target_file: Path, factory: str,
                         options: TraceOptions) -> FixResult:
    """The patched copy does not import or trace: leave out one edit at a time until it does; the one left out is
    reported as a bug in pcg-inspect (``broken``), never shown as a fix."""
    for i, suspect in enumerate(changes):
        rest = changes[:i] + changes[i + 1:]
        texts, fixed, unfixable = apply(rest)
        try:
            after = _trace_patched(target_file, factory, texts, options) if texts else None
        except TargetError:
            continue
        return FixResult(result.before, after, _unified(texts), fixed, result.left + unfixable, new_files=texts,
                         broken=[f"{suspect.what}: {error}"])
    return FixResult(result.before, None, "", [], result.left, new_files={},
                     broken=[f"{c.what}: {error}" for c in changes])


def _file_target(spec: str) -> tuple[Path, str]:
    where, _, factory = spec.rpartition(":")
    if not where.endswith(".py") or not factory.isidentifier():
        raise UsageError(f"fix edits the files of a file target (path/to/file.py:factory), not {spec!r}")
    path = Path(where).expanduser().resolve()
    if not path.is_file():
        raise UsageError(f"target file not found: {where}")
    return path, factory


# ---------------------------------------------------------------- planning


def plan(report: Report, target_file: Path) -> tuple[list[Edit], list[Left]]:
    """One Edit per fixable problem (deduplicated), one Left per other problem."""
    changes: dict[tuple, Edit] = {}
    left: list[Left] = []
    for item in list(report.graph_breaks) + [f for f in report.findings if f.severity in ("error", "warning")]:
        try:
            change = _change_for(item, report, target_file)
        except Unfixable as exc:
            left.append(Left(_title(item), item.file, item.line, str(exc)))
            continue
        if change is not None:
            changes.setdefault(change.key or (change.file, change.line, change.what), change)
    return list(changes.values()), left


def _title(item: Any) -> str:
    kind = getattr(item, "category", None) or getattr(item, "kind", "")
    return f"{kind}" + (f" {item.op}" if getattr(item, "op", "") else "") + (f": {item.code}" if item.code else "")


_SYNC_DECISIONS = {
    "scalar": "a value read on the host inside a captured piece: decide how forward gets it instead (computed before forward "
              "and passed in) or make the op a split op",
    "dynamic_shape": "a size that depends on tensor values: choose a static upper bound (and mask the padding) or make the op a "
                     "split op",
    "repeat_interleave": "output_size= must be the exact total of the repeats, and no shape known before forward equalled it "
                         "at every traced size: decide where it comes from (the scheduler often knows it) and pass it in, "
                         "or make the op a split op",
    "host_copy": "a copy to the host inside a captured piece: keep the value on the device or move the copy out of forward",
}


_NO_EDIT = "see the graph-break page for this type"


def _change_for(item: Any, report: Report, target_file: Path) -> Optional[Edit]:
    """The edit for one problem, by its kind's planner (``kinds.py``); Unfixable with the decision it needs."""
    kind = registry.get(_kind_name(item))
    if kind.advisory and not hasattr(item, "category"):
        return None  # warnings about recompiles and guards: no source edit makes them go away
    if not item.file or not _editable(item.file, target_file):
        raise Unfixable(f"{item.file or 'the code'} is not in the target's folder: pcg-inspect edits only your files")
    planner = kind.plan()
    if planner is None:
        raise Unfixable(_decision(item))
    return planner(item, target_file)


def _kind_name(item: Any) -> str:
    return getattr(item, "category", None) or item.kind


def _decision(item: Any) -> str:
    """What the user must decide for a problem no edit fixes: its kind's decision."""
    kind = registry.get(_kind_name(item))
    if kind.decision:
        return kind.decision
    if hasattr(item, "category") and not registry.known(kind.name):
        return _NO_EDIT
    return f"no automatic edit exists for this kind: see `pcg-inspect explain {kind.name}`"


# ---------------------------------------------------------------- planners (named by each kind in kinds.py)


def plan_data_ptr(item: Any, target_file: Path) -> Edit:
    """A data_ptr() comparison (a graph break): run it only in eager."""
    return Edit(item.file, item.line, f"run the data_ptr() check only in eager ({Path(item.file).name}:{item.line})",
                  lambda text, ln=item.line: guard_condition(text, ln))


def plan_side_effect(item: Any, target_file: Path) -> Edit:
    """A print / log / warning in forward: run it only in eager."""
    return Edit(item.file, item.line, f"run the side effect only in eager ({Path(item.file).name}:{item.line})",
                  lambda text, ln=item.line: guard_statement(text, ln))


def plan_fake(item: Any, target_file: Path) -> Edit:
    """An op without a fake (or with one that lies): register the fake derived from the eager run."""
    if not (item.op and item.fix):
        raise Unfixable(_decision(item))
    lies = getattr(item, "kind", "") == registry.FAKE_IMPL_MISMATCH.name
    return _fake_change(item.op, item.fix, target_file, replace_existing=lies or "raises" in item.hint)


def plan_mutates(item: Any, target_file: Path) -> Edit:
    """Declared mutations that differ from what the op writes: declare exactly what it writes."""
    if not item.op:
        raise Unfixable(_decision(item))
    return _mutates_change(item, target_file)


def plan_hoist(item: Any, target_file: Path) -> Edit:
    """A constant host query in forward: compute it once in __init__."""
    return _hoist_change(item)


def plan_local_buffer(item: Any, target_file: Path) -> Edit:
    """A buffer rebound in forward: keep it, use a local."""
    attr = item.details.attribute
    return Edit(item.file, item.line, f"keep self.{attr} unchanged: use a local in forward",
                  lambda text, ln=item.line, a=attr: localise_attribute(text, ln, a))


def plan_host_sync(item: Any, target_file: Path) -> Edit:
    """A host sync in a captured piece: output_size= for a repeat_interleave whose total is fixed; else a decision."""
    expr = item.details.output_size
    if not expr:
        raise Unfixable(_SYNC_DECISIONS.get(item.details.cause, _decision(item)))
    return Edit(item.file, item.line, f"pass output_size={expr} to repeat_interleave (the total at every traced size; "
                  "keep it only if it holds by construction)",
                  lambda text, ln=item.line, e=expr: add_keyword(text, ln, "repeat_interleave", "output_size", e))


def _editable(file: str, target_file: Path) -> bool:
    try:
        return Path(file).resolve().is_relative_to(target_file.parent)
    except (OSError, ValueError):
        return False


def _sources(target_file: Path) -> list[Path]:
    return sorted(p for p in target_file.parent.glob("*.py") if p.is_file())


def _fake_change(op: str, snippet: str, target_file: Path, replace_existing: bool) -> Edit:
    qual, name = op.replace(".", "::", 1), op.split(".", 1)[1]
    for path in _sources(target_file):
        text = path.read_text(encoding="utf-8")
        fn = _custom_op_function(text, qual)
        if replace_existing:
            registered = _fake_registered_by_call(text, qual, name)
            if registered:  # Library dialect: lib._register_fake("op", fn) / torch.library.register_fake("ns::op", fn)
                return Edit(str(path), 0, f"make the fake impl of {qual} return what the kernel returns ({registered})",
                            lambda t, n=registered, s=snippet: replace_named_function(t, n, s), ("fake", op))
            marker = f"{fn.group(1)}.register_fake" if fn else f'register_fake("{qual}")'
            if marker in text:
                body = _snippet_for(snippet, fn.group(1) if fn else None)
                return Edit(str(path), 0, f"make the fake impl of {qual} return what the kernel returns",
                              lambda t, mk=marker, b=body: replace_function(t, mk, b), ("fake", op))
            continue
        lines = [i for i, ln in enumerate(text.splitlines(), 1) if f'"{name}"' in ln or f"'{name}'" in ln
                 or f'define("{name}(' in ln or (fn and ln.startswith(f"def {fn.group(1)}("))]
        if lines:
            return Edit(str(path), max(lines), f"register a fake impl for {qual} next to its definition",
                          lambda t, ln=max(lines), s=snippet: insert_after_statement(t, ln, s), ("fake", op))
    fakes = target_file.with_name(f"{target_file.stem}_pcg_fakes.py")
    return Edit(str(fakes), 0, f"register a fake impl for {qual} (defined outside your files) in {fakes.name}",
                  lambda t, s=snippet: (t or '"""Fake impls added by pcg-inspect fix."""\n\nimport torch\n') + "\n\n" + s + "\n",
                  ("fake", op))


def _fake_registered_by_call(text: str, qual: str, name: str) -> str:
    """The function a call-form registration names as the fake of ``qual`` ('' when there is none)."""
    m = re.search(rf"register_fake\(\s*[\"'](?:{re.escape(qual)}|{re.escape(name)})[\"']\s*,\s*(\w+)\s*[,)]", text)
    return m.group(1) if m else ""


def _custom_op_function(text: str, qual: str) -> Optional[re.Match[str]]:
    """The function a ``@torch.library.custom_op("<qual>", ...)`` decorator defines (group 1: its name)."""
    return re.search(rf"custom_op\(\s*[\"']{re.escape(qual)}[\"'][^\n]*\n(?:\s*@[^\n]*\n)*\s*def (\w+)", text)


def _snippet_for(snippet: str, custom_op_fn: Optional[str]) -> str:
    return snippet if custom_op_fn is None else re.sub(r"@torch\.library\.register_fake\([^)]*\)", f"@{custom_op_fn}.register_fake", snippet)


def _mutates_change(item: Any, target_file: Path) -> Edit:
    d = item.details
    undeclared = item.kind == registry.UNDECLARED_MUTATION.name
    names = tuple(sorted(set(d.mutated) | (set(d.declared_mutable) if undeclared else set())))
    names = names if undeclared else tuple(sorted(set(d.mutated)))
    qual = item.op.replace(".", "::", 1)
    namespace, name = item.op.split(".", 1)
    sources = [(p, p.read_text(encoding="utf-8")) for p in _sources(target_file)]
    for path, text in sources:
        if _custom_op_function(text, qual):
            return Edit(str(path), 0, f"declare exactly what {qual} writes: mutates_args={names!r}",
                          lambda t, n=names: set_mutates_args(t, item.op, n), ("mutates", item.op))
    for path, text in sources:  # a Library("<namespace>", "DEF") in the same file defines it
        if f'define("{name}(' in text and re.search(rf"Library\(\s*[\"']{re.escape(namespace)}[\"']", text):
            return Edit(str(path), 0, f"mark {', '.join(names)} written in the schema of {qual}",
                          lambda t, n=names: mark_schema_mutable(t, item.op, n), ("mutates", item.op))
    raise Unfixable(f"{qual} is defined outside your files: correct its mutates_args where it is defined")


def _hoist_change(item: Any) -> Edit:
    """The call to hoist: from the innermost user frame outward, a call whose arguments are constants."""
    inner_function = ""
    for frame in reversed([f for f in item.user_stack if f.is_user]):
        for call, func in _constant_calls(frame.code):
            if not inner_function or func.split(".")[-1] == inner_function:
                attr = "_pcg_" + re.sub(r"\W", "_", func.split(".")[-1]).strip("_")
                return Edit(frame.file, frame.line, f"hoist {call} out of forward into __init__ (self.{attr})",
                              lambda t, ln=frame.line, c=call, a=attr: hoist_call(t, ln, c, a), ("hoist", call))
        inner_function = frame.function
    raise Unfixable("the host call takes values computed in forward: decide where its result comes from and pass it in")


def _constant_calls(code: str) -> list[tuple[str, str]]:
    out = []
    for found in re.finditer(r"([A-Za-z_][\w.]*)\(([^()]*)\)", code):
        args = [a for a in found.group(2).split(",") if a.strip()]
        try:
            [ast.literal_eval(a.split("=", 1)[-1].strip()) for a in args]
        except (ValueError, SyntaxError):
            continue
        out.append((found.group(0), found.group(1)))
    return out


# ---------------------------------------------------------------- applying


def apply(changes: list[Edit]) -> tuple[dict[str, str], list[str], list[Left]]:
    """New text per file, bottom-up within a file (an edit finds its node by line); failures become Left."""
    texts: dict[str, str] = {}
    fixed: list[str] = []
    left: list[Left] = []
    for change in sorted(changes, key=lambda c: (c.file, -c.line)):
        path = Path(change.file)
        current = texts.get(change.file, path.read_text(encoding="utf-8") if path.exists() else "")
        try:
            texts[change.file] = change.edit(current)
        except Unfixable as exc:
            left.append(Left(change.what, change.file, change.line, str(exc)))
            continue
        fixed.append(change.what)
        if not path.exists():  # a new fakes module: the target imports it
            target = path.with_name(path.name.replace("_pcg_fakes.py", ".py"))
            base = texts.get(str(target), target.read_text(encoding="utf-8"))
            texts[str(target)] = ensure_import(base, path.stem, f"import {path.stem}  # noqa: F401  (fake impls added by pcg-inspect fix)")
    return texts, fixed, left


def _unified(texts: dict[str, str]) -> str:
    out = []
    for file, new in texts.items():
        path = Path(file)
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        name = os.path.relpath(file) if not os.path.relpath(file).startswith("..") else file
        out += difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                    fromfile=f"a/{name}" if old else "/dev/null", tofile=f"b/{name}")
    return "".join(out)


_NOT_SOURCE = shutil.ignore_patterns("__pycache__", "*.pyc", ".git", ".venv", "venv", "node_modules", "*.safetensors",
                                     "*.bin", "*.pt", "*.pth", "*.ckpt", "*.gguf", "*.npy", "*.npz")
"""What the patched copy of the target's folder leaves out: caches, environments, weights and data."""


def _trace_patched(target_file: Path, factory: str, texts: dict[str, str], options: TraceOptions) -> Report:
    """The patched target, traced in a temporary copy of its folder, in a child process."""
    from .. import run as runner

    with tempfile.TemporaryDirectory(prefix="pcg-inspect-fix-") as tmp:
        copy = Path(tmp) / target_file.parent.name
        shutil.copytree(target_file.parent, copy, ignore=_NOT_SOURCE)
        for file, text in texts.items():
            (copy / Path(file).relative_to(target_file.parent)).write_text(text, encoding="utf-8")
        report = runner.run_child(replace(options, target=f"{copy / target_file.name}:{factory}"))
        return _relocated(report, str(copy), str(target_file.parent))


def _relocated(report: Report, old: str, new: str) -> Report:
    """The patched copy's report with its paths pointing back at the user's folder."""
    import json

    from ..report import Report as _Report

    return _Report.from_json(report.to_json().replace(json.dumps(old)[1:-1], json.dumps(new)[1:-1]))


def _write(texts: dict[str, str], started: float) -> list[str]:
    from .._io import write_atomic

    for file in texts:
        path = Path(file)
        if path.exists() and path.stat().st_mtime > started:
            raise UsageError(f"{file} changed since the trace: nothing was written; run fix again")
    return [str(write_atomic(file, text)) for file, text in texts.items()]
