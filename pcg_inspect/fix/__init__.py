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
from . import dialects
from .edits import Unfixable, add_keyword, clone_aliasing_returns, ensure_import, guard_condition, guard_statement, hoist_call, \
    insert_after_statement, insert_before_statement, localise_attribute, replace_function, replace_named_function, \
    set_call_argument, set_mutates_args, set_schema_mutable


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
    left: list[tuple[Any, Left]] = []
    faked: set[tuple[str, int]] = set()
    for item in list(report.graph_breaks) + [f for f in report.findings if f.severity in ("error", "warning")]:
        try:
            change = _change_for(item, report, target_file)
        except Unfixable as exc:
            left.append((item, Left(_title(item), item.file, item.line, str(exc))))
            continue
        if change is not None:
            changes.setdefault(change.key or (change.file, change.line, change.what), change)
            if change.key[:1] == ("fake",):
                faked.add((item.file, item.line))
    # A break that names no op, at a line whose op gets its fake (Dynamo failed inside a fake that lies): that edit
    # is its fix, and the re-trace shows whether it was enough.
    covered = [pair for pair in left if not pair[0].op and _kind_name(pair[0]) in _FAKE_FAILURES
               and (pair[0].file, pair[0].line) in faked]
    return list(changes.values()), [x for item, x in left if (item, x) not in covered]


_FAKE_FAILURES = ("missing_fake_impl", "dynamo_error")


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


def plan_alias(item: Any, target_file: Path) -> Edit:
    """An op whose output is a view of its input: clone it where the kernel returns the view."""
    if not item.op:
        raise Unfixable(_decision(item))
    return _alias_change(item, target_file)


def plan_target_error(item: Any, target_file: Path) -> Optional[Edit]:
    """The target fails eagerly: nothing to edit, unless the failure is torch refusing a custom op's aliasing output
    (the op's output_aliases_input finding carries that edit)."""
    if "may not alias any inputs" in (item.details.exception or item.message):
        return None
    raise Unfixable(_decision(item))


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


def _registration(qual: str, target_file: Path) -> Optional[dialects.Registration]:
    return dialects.find(qual, _sources(target_file), cpp_folder=target_file.parent)


def _fake_change(op: str, snippet: str, target_file: Path, replace_existing: bool) -> Edit:
    """The fake impl of ``op`` ('ns.op') as ``snippet`` (a ``@torch.library.register_fake`` def), in the form and
    place its registration dialect expects: next to the definition, or replacing the fake that lies."""
    qual = op.replace(".", "::", 1)
    reg = _registration(qual, target_file)
    key = ("fake", op)
    plain = _fake_def(snippet, None)
    name = re.search(r"def (\w+)\(", plain).group(1)
    if reg is not None and reg.fake_form in ("call", "keyword") and reg.fake.isidentifier():  # rewrite the function it names
        return Edit(reg.fake_file, 0, f"make the fake impl of {qual} return what the kernel returns ({reg.fake})",
                    lambda t, n=reg.fake, s=plain: replace_named_function(t, n, s), key)
    if reg is not None and reg.fake_form == "decorator":
        return Edit(reg.fake_file, 0, f"make the fake impl of {qual} return what the kernel returns",
                    lambda t, mk=reg.fake_marker, b=_fake_def(snippet, f"@{reg.fake_marker}"): replace_function(t, mk, b), key)
    if reg is not None and reg.dialect in (dialects.SGLANG, dialects.DIRECT):  # fake_impl= of the registration
        function, position = (("register_custom_op", None) if reg.dialect == dialects.SGLANG
                              else ("direct_register_custom_op", dialects.DIRECT_PARAMS.index("fake_impl")))
        what = (f"pass fake_impl={name} to the registration of {qual}"
                + (" (instead of out_shape=, which derives a fake that lies)" if reg.fake_form == "out_shape" else ""))

        def edit(t: str, r: dialects.Registration = reg, f: str = function, p: Optional[int] = position) -> str:
            t = set_call_argument(t, r.define_line, f, "fake_impl", name, position=p, drop=("out_shape",))
            return insert_before_statement(t, r.define_line, plain)
        return Edit(reg.file, reg.define_line, what, edit, key)
    if reg is not None and reg.dialect == dialects.CUSTOM_OP:
        return Edit(reg.file, reg.line, f"register a fake impl for {qual} next to its definition",
                    lambda t, ln=reg.line, s=_fake_def(snippet, f"@{reg.kernel}.register_fake"): insert_after_statement(t, ln, s), key)
    if reg is not None and reg.dialect == dialects.LIBRARY:
        return Edit(reg.file, reg.line, f"register a fake impl for {qual} next to its definition",
                    lambda t, ln=reg.line, s=snippet: insert_after_statement(t, ln, s), key)
    fakes = target_file.with_name(f"{target_file.stem}_pcg_fakes.py")
    where = f", {Path(reg.file).name}:{reg.schema_line}" if reg is not None and reg.file else ""
    return Edit(str(fakes), 0, f"register a fake impl for {qual} (defined in compiled code{where}) in {fakes.name}",
                lambda t, s=snippet: (t or '"""Fake impls added by pcg-inspect fix."""\n\nimport torch\n') + "\n\n" + s + "\n",
                key)


def _fake_def(snippet: str, decorator: Optional[str]) -> str:
    """The observed fake (``@torch.library.register_fake("ns::op")`` + def) under ``decorator`` ('' for a plain def,
    None for a plain def too, the original decorator when ``decorator`` is the same)."""
    lines = snippet.splitlines()
    first = next((i for i, ln in enumerate(lines) if ln.startswith("def ")), 0)
    comments = [ln.split("#", 1)[1].strip() for ln in lines[:first] if "#" in ln]
    body = "\n".join(lines[first:])
    head = (decorator + (f"  # {comments[0]}" if comments else "") + "\n") if decorator else \
        "".join(f"# {c}\n" for c in comments)
    return head + body


def _mutates_change(item: Any, target_file: Path) -> Edit:
    d = item.details
    undeclared = item.kind == registry.UNDECLARED_MUTATION.name
    names = tuple(sorted(set(d.mutated) | (set(d.declared_mutable) if undeclared else set())))
    qual = item.op.replace(".", "::", 1)
    reg = _registration(qual, target_file)
    key = ("mutates", item.op)
    if reg is None:
        raise Unfixable(f"{qual} is defined outside your files: correct its mutates_args where it is defined")
    if reg.dialect == dialects.CUSTOM_OP:
        return Edit(reg.file, 0, f"declare exactly what {qual} writes: mutates_args={names!r}",
                    lambda t, n=names: set_mutates_args(t, item.op, n), key)
    if reg.dialect == dialects.LIBRARY:
        return Edit(reg.file, 0, f"mark exactly {', '.join(names) or 'nothing'} written in the schema of {qual}",
                    lambda t, n=names, op=qual.split("::")[1]: set_schema_mutable(t, op, n), key)
    if reg.dialect in (dialects.SGLANG, dialects.DIRECT):
        function, position = (("register_custom_op", None) if reg.dialect == dialects.SGLANG
                              else ("direct_register_custom_op", dialects.DIRECT_PARAMS.index("mutates_args")))
        value = "[" + ", ".join(repr(n) for n in names) + "]"
        return Edit(reg.file, reg.define_line, f"declare exactly what {qual} writes: mutates_args={value}",
                    lambda t, r=reg, f=function, p=position, v=value: set_call_argument(t, r.define_line, f, "mutates_args", v, position=p),
                    key)
    adds = [n for n in names if n not in d.declared_mutable]
    drops = [n for n in d.declared_mutable if n not in names]
    schema = " and ".join(([f"mark {', '.join(f'Tensor(a!) {n}' for n in adds)} written"] if adds else [])
                          + ([f"drop the (a!) of {', '.join(drops)}"] if drops else [])) or "declare exactly what it writes"
    if reg.file:
        raise Unfixable(f"{qual}'s schema is in C++ ({Path(reg.file).name}:{reg.schema_line}): {schema} there and "
                        "rebuild the extension (pcg-inspect edits Python, not compiled code)")
    raise Unfixable(f"{qual} is defined outside your files: correct its mutates_args where it is defined")


def _alias_change(item: Any, target_file: Path) -> Edit:
    qual = item.op.replace(".", "::", 1)
    reg = _registration(qual, target_file)
    inputs = tuple(item.details.aliased or ())
    if reg is not None and not reg.kernel and reg.dialect != dialects.EXTENSION:  # registered in a loop: by its name
        named = _defining_file(qual.split("::")[1], reg.file, target_file, strict=True)
        reg = replace(reg, kernel=qual.split("::")[1]) if named else reg
    if reg is not None and not reg.kernel and reg.dialect != dialects.EXTENSION:
        raise Unfixable(f"the kernel of {qual} is not named where it is registered ({Path(reg.file).name}:{reg.line}): "
                        "return a .clone() where it returns a view of its input")
    if reg is None or not reg.kernel:
        where = f" ({Path(reg.file).name}:{reg.schema_line})" if reg is not None and reg.file else ""
        raise Unfixable(f"the kernel of {qual} is compiled code{where}: return a fresh tensor there (or declare the alias "
                        "in its schema, Tensor(a) x -> Tensor(a), if it is meant to return a view) and rebuild")
    file = _defining_file(reg.kernel, reg.file, target_file)
    schema = f"'{qual.split('::')[1]}(Tensor(a) {inputs[0] if inputs else 'x'}) -> Tensor(a)'"
    choice = (f"; if it is meant to return a view, declare the alias in its schema instead: {schema}"
              if reg.dialect == dialects.LIBRARY else
              f"; if it is meant to return a view, it needs a Library schema that declares the alias ({schema}): "
              f"{reg.dialect} infers the schema and cannot express it")
    return Edit(file, 0, f"return a copy where {reg.kernel} returns a view of {' or '.join(inputs) or 'its input'}{choice}",
                lambda t, k=reg.kernel, i=inputs: clone_aliasing_returns(t, k, i)[0], ("alias", item.op))


def _defining_file(function: str, first: str, target_file: Path, strict: bool = False) -> str:
    """The file that defines module-level ``function`` (``first`` if it does; '' with ``strict`` when none does)."""
    for path in [Path(first)] + _sources(target_file):
        if re.search(rf"^def {re.escape(function)}\(", path.read_text(encoding="utf-8"), re.M):
            return str(path)
    return "" if strict else first


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
            texts[str(target)] = ensure_import(base, path.stem, f"import {path.stem}  # noqa: F401  (fake impls added by pcg-inspect fix)",
                                           after_loading=True)
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
