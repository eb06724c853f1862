"""Source edits on the user's files, through a concrete syntax tree (libcst): formatting and comments stay.

Each edit takes a file's text and returns the new text, or raises ``Unfixable`` with the reason.
Edits find their node by line number in the text they are given, so a plan applies them bottom-up.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Optional

import libcst as cst
import libcst.matchers as m
from libcst.metadata import MetadataWrapper, ParentNodeProvider, PositionProvider

COMPILING = "torch.compiler.is_compiling()"


class Unfixable(Exception):
    """The edit cannot be made automatically; the message says why and what the user must decide."""


def _wrap(text: str) -> tuple[MetadataWrapper, Any, Any]:
    try:
        wrapper = MetadataWrapper(cst.parse_module(text))
    except cst.ParserSyntaxError as exc:
        raise Unfixable(f"the file does not parse: {exc.message}") from None
    return wrapper, wrapper.resolve(PositionProvider), wrapper.resolve(ParentNodeProvider)


def _at_line(positions: Any, line: int, kind: Any) -> list[Any]:
    return [n for n, p in positions.items() if isinstance(n, kind) and p.start.line == line]


def _code(node: cst.CSTNode) -> str:
    return cst.Module(body=[]).code_for_node(node)


def _rewrite(wrapper: MetadataWrapper, replacements: dict[Any, Any]) -> str:
    by_id = {id(k): v for k, v in replacements.items()}

    class _Swap(cst.CSTTransformer):
        def on_leave(self, original: cst.CSTNode, updated: cst.CSTNode) -> Any:
            return by_id.get(id(original), updated)

    return wrapper.module.visit(_Swap()).code


def guard_condition(text: str, line: int) -> str:
    """``if <cond>:`` at ``line`` -> ``if not torch.compiler.is_compiling() and (<cond>):`` (also elif/while/x = <cmp>)."""
    wrapper, positions, _ = _wrap(text)
    for node in _at_line(positions, line, (cst.If, cst.While)):
        test = cst.parse_expression(f"not {COMPILING} and ({_code(node.test)})")
        return ensure_import(_rewrite(wrapper, {node: node.with_changes(test=test)}), "torch")
    for node in _at_line(positions, line, cst.Assign):
        if m.matches(node.value, m.Comparison()):
            value = cst.parse_expression(f"(not {COMPILING}) and ({_code(node.value)})")
            return ensure_import(_rewrite(wrapper, {node: node.with_changes(value=value)}), "torch")
    raise Unfixable("the address is used as a value, not in a condition: computing it needs the real tensor; decide where "
                    "to compute it outside the compiled forward and pass it in")


def guard_statement(text: str, line: int) -> str:
    """The statement at ``line`` (a print, a logging or warnings call) -> run only in eager."""
    wrapper, positions, parents = _wrap(text)
    stmts = _at_line(positions, line, cst.SimpleStatementLine)
    if not stmts:
        raise Unfixable("the statement shares its line with other code (a one-line if/for body): move it to its own line")
    stmt = stmts[0]
    guarded = cst.If(test=cst.parse_expression(f"not {COMPILING}"), body=cst.IndentedBlock(body=[stmt.with_changes(leading_lines=[])]),
                     leading_lines=stmt.leading_lines)
    return ensure_import(_rewrite(wrapper, {stmt: guarded}), "torch")


def insert_after_statement(text: str, line: int, snippet: str) -> str:
    """Insert top-level ``snippet`` after the top-level statement that covers ``line``."""
    module = cst.parse_module(text)
    wrapper = MetadataWrapper(module)
    positions = wrapper.resolve(PositionProvider)
    body = list(wrapper.module.body)
    for i, stmt in enumerate(body):
        pos = positions[stmt]
        if pos.start.line <= line <= pos.end.line:
            new = list(cst.parse_module(snippet).body)
            new[0] = new[0].with_changes(leading_lines=[cst.EmptyLine(), cst.EmptyLine()])
            return wrapper.module.with_changes(body=body[: i + 1] + new + body[i + 1:]).code
    raise Unfixable(f"no top-level statement at line {line}")


_LOADS = re.compile(r"\b(?:load_inline|load|load_library)\(")
"""A top-level call that loads compiled ops (torch.utils.cpp_extension.load/load_inline, torch.ops.load_library)."""


def ensure_import(text: str, module: str, line: Optional[str] = None, after_loading: bool = False) -> str:
    """Add ``import <module>`` (or ``line``) after the module's last top-level import unless it is there already
    (after the last one: an import that registers ops may follow other statements); with ``after_loading`` after
    the last top-level statement that loads compiled ops, if that comes later (their fakes need the ops defined)."""
    statement = line or f"import {module}"
    if re.search(rf"^\s*{re.escape(statement)}\b", text, re.M) or (line is None and re.search(rf"^import {re.escape(module)}\b", text, re.M)):
        return text
    tree = cst.parse_module(text)
    body = list(tree.body)
    imports = [i for i, stmt in enumerate(body) if m.matches(stmt, m.SimpleStatementLine(body=[m.OneOf(m.Import(), m.ImportFrom())]))]
    last = imports[-1] if imports else (0 if body and m.matches(body[0], m.SimpleStatementLine(body=[m.Expr(m.SimpleString())])) else -1)
    if after_loading:
        loads = [i for i, stmt in enumerate(body) if isinstance(stmt, cst.SimpleStatementLine) and _LOADS.search(_code(stmt))]
        last = max([last] + loads)
    new = cst.parse_statement(statement + "\n")
    return tree.with_changes(body=body[: last + 1] + [new] + body[last + 1:]).code


def set_mutates_args(text: str, op: str, names: tuple[str, ...]) -> str:
    """The ``mutates_args=`` of ``@torch.library.custom_op("<op>", ...)`` -> exactly ``names``."""
    qual = op.replace(".", "::", 1)
    wrapper, positions, _ = _wrap(text)
    for node in positions:
        if isinstance(node, cst.Call) and node.args and m.matches(node.args[0].value, m.SimpleString()) \
                and node.args[0].value.evaluated_value == qual and _code(node.func).endswith("custom_op"):
            value = cst.parse_expression("(" + "".join(f"{n!r}, " for n in names) + ")" if names else "()")
            args = [a.with_changes(value=value) if a.keyword is not None and a.keyword.value == "mutates_args" else a
                    for a in node.args]
            return _rewrite(wrapper, {node: node.with_changes(args=args)})
    raise Unfixable(f"no @torch.library.custom_op(\"{qual}\", ...) in this file")


def replace_function(text: str, decorated_with: str, snippet: str) -> str:
    """Swap the function whose decorator mentions ``decorated_with`` for ``snippet`` (a whole def)."""
    wrapper, positions, _ = _wrap(text)
    new = cst.parse_statement(snippet)
    for node in positions:
        if isinstance(node, cst.FunctionDef) and any(decorated_with in _code(d.decorator) for d in node.decorators):
            return _rewrite(wrapper, {node: new.with_changes(leading_lines=node.leading_lines)})
    raise Unfixable(f"no function decorated with {decorated_with} in this file")


def replace_named_function(text: str, name: str, snippet: str) -> str:
    """Swap the module-level function ``name`` for ``snippet`` (a def), keeping the name and dropping the snippet's
    decorators: the fake a ``lib._register_fake("op", name)`` call registers is rewritten where it stands."""
    wrapper, positions, _ = _wrap(text)
    new = cst.parse_statement(snippet)
    if not isinstance(new, cst.FunctionDef):
        raise Unfixable("the fake impl to write is not a function")
    new = new.with_changes(name=cst.Name(name), decorators=())
    for node in positions:
        if isinstance(node, cst.FunctionDef) and node.name.value == name:
            return _rewrite(wrapper, {node: new.with_changes(leading_lines=node.leading_lines)})
    raise Unfixable(f"no function {name} in this file")


def hoist_call(text: str, line: int, call_code: str, attribute: str) -> str:
    """In the method at ``line``, replace the call ``call_code`` by ``self.<attribute>``, computed once in ``__init__``."""
    wrapper, positions, parents = _wrap(text)
    calls = _nearest(positions, line, lambda n: isinstance(n, cst.Call) and _code(n) == call_code)
    if not calls:
        raise Unfixable(f"cannot find {call_code} at line {line}")
    method = _enclosing(calls[0], parents, cst.FunctionDef)
    cls = _enclosing(method, parents, cst.ClassDef) if method is not None else None
    init = next((s for s in (cls.body.body if cls is not None else ()) if isinstance(s, cst.FunctionDef) and s.name.value == "__init__"), None)
    if init is None:
        raise Unfixable("the call is not in a method of a class with an __init__ to hoist it to: compute it once at module "
                        "import and read the constant in forward")
    assign = cst.parse_statement(f"self.{attribute} = {call_code}  # hoisted out of forward by pcg-inspect fix\n")
    new_init = init.with_changes(body=init.body.with_changes(body=list(init.body.body) + [assign]))
    replacement = cst.parse_expression(f"self.{attribute}")
    return _rewrite(wrapper, {calls[0]: replacement, init: new_init})


def localise_attribute(text: str, line: int, attribute: str) -> str:
    """``self.X = <expr>`` at ``line`` -> ``X = <expr>``, and ``self.X`` read after it in that method -> ``X``."""
    wrapper, positions, parents = _wrap(text)
    assigns = _nearest(positions, line, lambda n: isinstance(n, cst.Assign) and m.matches(
        n.targets[0].target, m.Attribute(value=m.Name("self"), attr=m.Name(attribute))))
    if not assigns:
        raise Unfixable(f"no `self.{attribute} = ...` at line {line}")
    method = _enclosing(assigns[0], parents, cst.FunctionDef)
    start = positions[assigns[0]].start.line
    swaps: dict[Any, Any] = {assigns[0].targets[0]: assigns[0].targets[0].with_changes(target=cst.Name(attribute))}
    for node, pos in positions.items():
        if pos.start.line > start and m.matches(node, m.Attribute(value=m.Name("self"), attr=m.Name(attribute))) \
                and _enclosing(node, parents, cst.FunctionDef) is method:
            swaps[node] = cst.Name(attribute)
    return _rewrite(wrapper, swaps)


def add_keyword(text: str, line: int, function: str, keyword: str, value: str) -> str:
    """Add ``keyword=value`` to the call of ``function`` (``torch.f(...)`` or ``x.f(...)``) at ``line``."""
    wrapper, positions, _ = _wrap(text)
    calls = _nearest(positions, line, lambda n: isinstance(n, cst.Call) and _code(n.func).split(".")[-1] == function
                     and not any(a.keyword is not None and a.keyword.value == keyword for a in n.args))
    if not calls:
        raise Unfixable(f"no call of {function} without {keyword}= at line {line}")
    call = calls[0]
    args = list(call.args)
    if args and args[-1].comma is cst.MaybeSentinel.DEFAULT:
        args[-1] = args[-1].with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
    no_space = cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace(""))
    args.append(cst.Arg(value=cst.parse_expression(value), keyword=cst.Name(keyword), equal=no_space))
    return _rewrite(wrapper, {call: call.with_changes(args=args)})


def _nearest(positions: Any, line: int, wanted: Callable[[Any], bool], window: int = 8) -> list[Any]:
    """Nodes ``wanted`` accepts at ``line``, else the nearest within ``window`` lines (an earlier edit of the
    same file may have added lines above, e.g. an assignment hoisted into ``__init__``)."""
    found = [(abs(p.start.line - line), n) for n, p in positions.items() if abs(p.start.line - line) <= window and wanted(n)]
    best = min((d for d, _ in found), default=None)
    return [n for d, n in found if d == best]


def _enclosing(node: Any, parents: Any, kind: Any) -> Any:
    while node is not None and not isinstance(node, kind):
        node = parents.get(node)
    return node


Edit = Callable[[str], str]


def insert_before_statement(text: str, line: int, snippet: str) -> str:
    """Insert top-level ``snippet`` before the top-level statement that covers ``line`` (and its decorators)."""
    wrapper, positions, _ = _wrap(text)
    body = list(wrapper.module.body)
    for i, stmt in enumerate(body):
        pos = positions[stmt]
        if pos.start.line <= line <= pos.end.line:
            new = list(cst.parse_module(snippet.rstrip() + "\n").body)
            new[0] = new[0].with_changes(leading_lines=stmt.leading_lines)
            blank = [cst.EmptyLine(), cst.EmptyLine()] if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)) or \
                isinstance(new[-1], (cst.FunctionDef, cst.ClassDef)) else []
            return wrapper.module.with_changes(body=body[:i] + new + [stmt.with_changes(leading_lines=blank)] + body[i + 1:]).code
    raise Unfixable(f"no top-level statement at line {line}")


def set_call_argument(text: str, line: int, function: str, keyword: str, value: str, position: Optional[int] = None,
                      drop: tuple[str, ...] = ()) -> str:
    """In the call of ``function`` within the top-level statement at ``line`` (a decorator counts): pass
    ``keyword=value`` (replacing it where it is passed by keyword or at ``position``), and drop the ``drop`` keywords."""
    from .dialects import arg

    wrapper, positions, parents = _wrap(text)
    statement = next((s for s in wrapper.module.body if positions[s].start.line <= line <= positions[s].end.line), None)
    calls = [n for n in positions if isinstance(n, cst.Call) and _code(n.func).split(".")[-1] == function
             and statement is not None and _within(n, statement, parents)]
    if not calls:
        raise Unfixable(f"no call of {function} at line {line}")
    call = calls[0]
    new_value = cst.parse_expression(value)
    current = arg(call, keyword, position)
    args = [a for a in call.args if not (a.keyword is not None and a.keyword.value in drop)]
    if current is not None:
        args = [a.with_changes(value=new_value) if a is current else a for a in args]
    else:
        if args and args[-1].comma is not cst.MaybeSentinel.DEFAULT:
            pass
        elif args:
            args[-1] = args[-1].with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        no_space = cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace(""))
        args.append(cst.Arg(value=new_value, keyword=cst.Name(keyword), equal=no_space))
    if args and not (current is not None and current is call.args[-1]):
        last = args[-1]
        if last.comma is not cst.MaybeSentinel.DEFAULT and call.args[-1].comma is cst.MaybeSentinel.DEFAULT:
            args[-1] = last.with_changes(comma=cst.MaybeSentinel.DEFAULT)
    return _rewrite(wrapper, {call: call.with_changes(args=args)})


def _within(node: Any, ancestor: Any, parents: Any) -> bool:
    while node is not None:
        if node is ancestor:
            return True
        node = parents.get(node)
    return False


def set_schema_mutable(text: str, name: str, names: tuple[str, ...]) -> str:
    """In the ``define("<name>(...) -> ...")`` schema (or ``torch.library.define("ns::<name>", "(...) -> ...")``),
    mark exactly ``names`` written (``Tensor(a!) x``) and unmark the others."""
    found = re.search(rf"define\(\s*[\"']{re.escape(name)}\(", text) or \
        re.search(rf"define\(\s*[\"'][\w.]+::{re.escape(name)}[\"']\s*,\s*[\"']\s*\(", text)
    if found is None:
        raise Unfixable(f"no define(\"{name}(...)\") schema in this file")
    start = end = found.end()
    depth = 1
    while depth and end < len(text):
        depth += {"(": 1, ")": -1}.get(text[end], 0)
        end += 1
    kept = set(re.findall(r"Tensor\(([a-z])\)", text[start: end - 1]))  # alias letters that stay
    letters = iter(c for c in "abcdefghijklmnopqrstuvwxyz" if c not in kept)
    args = []
    for piece in re.split(r",(?![^(]*\))", text[start: end - 1]):
        parts = piece.strip().rsplit(" ", 1)
        if len(parts) == 2 and parts[0].startswith("Tensor"):
            bare = re.sub(r"\(([a-z])!\)", "", parts[0])
            if parts[1] not in names:
                typ = bare
            elif re.search(r"\([a-z]\)", bare):  # an alias annotation: keep its letter, now written
                typ = re.sub(r"\(([a-z])\)", r"(\1!)", bare, count=1)
            else:
                typ = bare.replace("Tensor", f"Tensor({next(letters)}!)", 1)
            piece = piece.replace(parts[0], typ, 1)
        args.append(piece)
    return text[:start] + ",".join(args) + text[end - 1:]


_VIEWS = {"view", "view_as", "reshape", "reshape_as", "t", "transpose", "permute", "unsqueeze", "squeeze", "flatten",
          "unflatten", "narrow", "expand", "expand_as", "as_strided", "detach", "select", "split", "chunk", "unbind",
          "diagonal", "movedim", "swapaxes", "swapdims", "T", "mT", "real", "imag", "view_as_real", "contiguous"}
"""Tensor methods whose result may share the input's storage (``contiguous``/``reshape`` when nothing must move)."""


def clone_aliasing_returns(text: str, function: str, inputs: tuple[str, ...]) -> tuple[str, list[int]]:
    """In module-level ``function``, ``return <view of an input>`` -> ``return <...>.clone()``; the lines changed."""
    wrapper, positions, _ = _wrap(text)
    fn = next((s for s in wrapper.module.body if isinstance(s, cst.FunctionDef) and s.name.value == function), None)
    if fn is None:
        raise Unfixable(f"no module-level function {function} in this file")
    swaps, lines = {}, []
    for node in positions:
        if isinstance(node, cst.Return) and node.value is not None and _within_function(node, fn, positions) \
                and _view_of(node.value, inputs):
            value = node.value
            wrapped = value if isinstance(value, (cst.Name, cst.Attribute, cst.Call, cst.Subscript)) else \
                cst.parse_expression(f"({_code(value)})")
            swaps[node] = node.with_changes(value=cst.Call(func=cst.Attribute(value=wrapped, attr=cst.Name("clone"))))
            lines.append(positions[node].start.line)
    if not swaps:
        raise Unfixable(f"{function} returns no view of {' or '.join(inputs)} directly (the alias comes from a helper): "
                        "return a .clone() where it is made, or write into a declared mutable output")
    return _rewrite(wrapper, swaps), sorted(lines)


def _within_function(node: Any, fn: Any, positions: Any) -> bool:
    a, b = positions[node], positions[fn]
    return b.start.line <= a.start.line <= b.end.line


def _view_of(expr: Any, inputs: tuple[str, ...]) -> bool:
    """``x``, ``x[...]``, ``x.view(...)...`` with ``x`` an input: an expression that can alias the input."""
    while True:
        if isinstance(expr, cst.Name):
            return expr.value in inputs
        if isinstance(expr, cst.Subscript):
            expr = expr.value
        elif isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute) and expr.func.attr.value in _VIEWS:
            expr = expr.func.value
        elif isinstance(expr, cst.Attribute) and expr.attr.value in _VIEWS:
            expr = expr.value
        else:
            return False
