"""Source reads Dynamo cannot report: ``data_ptr()`` calls in the user functions forward reaches.

A comparison guarded by ``torch.compiler.is_compiling()`` never runs under Dynamo, so no break
shows it; one in a branch this trace did not take breaks capture the day it is taken.
"""

from __future__ import annotations

import ast
import re
from functools import lru_cache
from typing import Any, Optional, Sequence

from ..report import Finding
from ..frames import is_user_file, source_line

_COMPILING = ("is_compiling", "is_dynamo_compiling", "is_torchdynamo_compiling")


def user_functions(graphs: Sequence[Any], breaks: Sequence[Any], roots: Sequence[str]) -> set[tuple[str, int]]:
    """(file, line) of user frames seen in graph node stack traces and break stacks."""
    seen: set[tuple[str, int]] = set()
    for g in graphs:
        for node in g.gm.graph.nodes:
            for file, line in re.findall(r'File "([^"]+)", line (\d+)', node.meta.get("stack_trace") or ""):
                if is_user_file(file, roots):
                    seen.add((file, int(line)))
    for b in breaks:
        for f in b.user_stack:
            if f.is_user:
                seen.add((f.file, f.line))
    return seen


@lru_cache(maxsize=256)
def _tree(path: str) -> Optional[ast.Module]:
    try:
        with open(path, encoding="utf-8") as fh:
            return ast.parse(fh.read(), filename=path)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None


def _functions_at(tree: ast.Module, lines: set[int]) -> list[ast.AST]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            end = getattr(node, "end_lineno", node.lineno)
            if any(node.lineno <= ln <= end for ln in lines):
                out.append(node)
    return out


def _is_compiling_call(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and ast.unparse(node.func).split(".")[-1] in _COMPILING


def _guarded(call: ast.Call, parents: dict[ast.AST, ast.AST]) -> bool:
    # `not is_compiling() and <...data_ptr()...>` or inside `if not is_compiling():`
    node: ast.AST = call
    while node in parents:
        parent = parents[node]
        if isinstance(parent, ast.BoolOp) and isinstance(parent.op, ast.And):
            idx = parent.values.index(node) if node in parent.values else -1
            for earlier in parent.values[: max(idx, 0)]:
                if isinstance(earlier, ast.UnaryOp) and isinstance(earlier.op, ast.Not) and _is_compiling_call(earlier.operand):
                    return True
        if isinstance(parent, ast.If) and node in parent.body:
            t = parent.test
            if isinstance(t, ast.UnaryOp) and isinstance(t.op, ast.Not) and _is_compiling_call(t.operand):
                return True
        node = parent
    return False


def data_ptr_findings(graphs: Sequence[Any], breaks: Sequence[Any], roots: Sequence[str]) -> list[Finding]:
    """info for guarded reads, warning for reads this trace never reached; breaks are reported already."""
    by_file: dict[str, set[int]] = {}
    for file, line in user_functions(graphs, breaks, roots):
        by_file.setdefault(file, set()).add(line)
    broken = {(b.file, b.line) for b in breaks if b.category == "data_ptr"}
    out: list[Finding] = []
    seen: set[tuple[str, int]] = set()
    for file, lines in sorted(by_file.items()):
        tree = _tree(file)
        if tree is None:
            continue
        for fn in _functions_at(tree, lines):
            parents = {child: parent for parent in ast.walk(fn) for child in ast.iter_child_nodes(parent)}
            for node in ast.walk(fn):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "data_ptr"):
                    continue
                key = (file, node.lineno)
                if key in seen or key in broken:
                    continue
                seen.add(key)
                guarded = _guarded(node, parents)
                out.append(
                    Finding(
                        kind="data_ptr",
                        severity="info" if guarded else "warning",
                        message=(
                            "address read guarded by torch.compiler.is_compiling(): it runs only in eager, "
                            "so the captured graph never checks it"
                            if guarded
                            else "address read in a branch this trace did not take: it breaks capture when reached, "
                            "and a captured graph would bake the address in"
                        ),
                        file=file,
                        line=node.lineno,
                        function=fn.name,  # type: ignore[attr-defined]
                        code=source_line(file, node.lineno),
                        hint="" if guarded else "Guard it with `not torch.compiler.is_compiling() and ...`, or remove it.",
                    )
                )
    return out
