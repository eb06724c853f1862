"""Where and how an op is registered, read from the user's sources (libcst): the dialect decides each edit's form.

Dialects engines use, and what ``find`` records for each:

- ``custom_op``: ``@torch.library.custom_op("ns::op", mutates_args=...)`` on the kernel, fake by
  ``@op.register_fake`` (or ``torch.library.register_fake("ns::op")``);
- ``library``: ``lib = Library("ns", "DEF"/"FRAGMENT")``, ``lib.define("op(...) -> ...")``, the kernel by
  ``lib.impl("op", fn, key)`` or ``@torch.library.impl("ns::op", key)``, the fake by ``lib._register_fake("op", fn)``,
  ``torch.library.register_fake("ns::op", fn)`` or the decorator form;
- ``direct_register``: vLLM's (and sglang's) ``direct_register_custom_op(op_name, op_func, mutates_args, fake_impl,
  target_lib, ...)``;
- ``sglang``: sglang's ``@register_custom_op(op_name=, mutates_args=, out_shape= | fake_impl=)`` (namespace
  ``sglang``; without ``out_shape``/``fake_impl`` its fake returns None), under an optional ``@register_split_op()``;
- ``extension``: ``TORCH_LIBRARY(ns, m) { m.def("op(...)") }`` in a C++/CUDA source of the target's folder, or no
  definition in the user's files at all (a compiled package): only a Python fake can be edited.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import libcst as cst
from libcst.metadata import MetadataWrapper, ParentNodeProvider, PositionProvider

CUSTOM_OP, LIBRARY, DIRECT, SGLANG, EXTENSION = "custom_op", "library", "direct_register", "sglang", "extension"

DIRECT_PARAMS = ("op_name", "op_func", "mutates_args", "fake_impl", "target_lib")
"""direct_register_custom_op's leading parameters, in order (vLLM and sglang agree on these five)."""

_CPP = ("*.cpp", "*.cc", "*.cu", "*.cxx")


@dataclass(frozen=True)
class Registration:
    """How one op is registered in the user's files."""

    dialect: str
    file: str
    """The file that defines it ('' for an op defined outside the user's files)."""
    line: int
    """The end of the last top-level statement that registers it (define, impl, the decorated def, the call)."""
    define_line: int = 0
    """A line of the statement that defines it (a decorated def: its ``def`` line)."""
    kernel: str = ""
    """The Python function that implements it ('' for a C++ kernel)."""
    fake: str = ""
    """The function registered as its fake ('' when none, or when the fake is a decorated ``_``)."""
    fake_form: str = ""
    """'decorator' (``@op.register_fake`` / ``@torch.library.register_fake(...)``: ``fake_marker`` finds it),
    'call' (a registration call names ``fake``), 'keyword' (``fake_impl=fake``), 'out_shape' (sglang derives it)."""
    fake_marker: str = ""
    fake_file: str = ""
    """The file of the fake (an extension's fake lives in a .py of its own)."""
    schema_line: int = 0
    """``extension``: the line of ``m.def("op(...)")`` in ``file`` (a C++ source)."""


def find(qual: str, files: list[Path], cpp_folder: Optional[Path] = None) -> Optional[Registration]:
    """The registration of ``qual`` ('ns::op') in ``files`` (Python), else in C++ sources under ``cpp_folder``."""
    namespace, name = qual.split("::", 1)
    fake: tuple[str, str, str, str] = ("", "", "", "")
    for path in files:
        text = path.read_text(encoding="utf-8")
        if name not in text:
            continue
        try:
            scan = _Scan(text, namespace, name)
        except cst.ParserSyntaxError:
            continue
        if scan.dialect:
            return Registration(scan.dialect, str(path), scan.line, scan.define_line, scan.kernel, scan.fake, scan.fake_form,
                                scan.fake_marker, str(path) if scan.fake_form else "")
        if scan.fake_form and not fake[0]:
            fake = (scan.fake, scan.fake_form, scan.fake_marker, str(path))
    cpp = _cpp_definition(namespace, name, cpp_folder) if cpp_folder else None
    if cpp or fake[0] or fake[1]:
        file, line = cpp or ("", 0)
        return Registration(EXTENSION, file, 0, 0, "", fake[0], fake[1], fake[2], fake[3], schema_line=line)
    return None


def _cpp_definition(namespace: str, name: str, folder: Path) -> Optional[tuple[str, int]]:
    for pattern in _CPP:
        for path in sorted(folder.rglob(pattern)):
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            if not re.search(rf"TORCH_LIBRARY(?:_FRAGMENT)?\(\s*{re.escape(namespace)}\s*,", text):
                continue
            found = re.search(rf"\.def\(\s*\"{re.escape(name)}[(.\"]", text)
            if found:
                return str(path), text.count("\n", 0, found.start()) + 1
    return None


def _str(node: Any) -> Optional[str]:
    if isinstance(node, cst.SimpleString):
        value = node.evaluated_value
        return value if isinstance(value, str) else None
    return None


def _code(node: cst.CSTNode) -> str:
    return cst.Module(body=[]).code_for_node(node)


def arg(call: cst.Call, keyword: str, position: Optional[int] = None) -> Optional[cst.Arg]:
    """The argument passed as ``keyword=`` or at ``position``."""
    for a in call.args:
        if a.keyword is not None and a.keyword.value == keyword:
            return a
    positional = [a for a in call.args if a.keyword is None and not a.star]
    return positional[position] if position is not None and position < len(positional) else None


class _Scan:
    """One pass over a module's calls: the dialect that defines ``namespace::name`` here, its kernel and fake."""

    def __init__(self, text: str, namespace: str, name: str) -> None:
        self.dialect = self.kernel = self.fake = self.fake_form = self.fake_marker = ""
        self.line = self.define_line = 0
        self.qual = f"{namespace}::{name}"
        self.namespace, self.name = namespace, name
        wrapper = MetadataWrapper(cst.parse_module(text))
        self.positions = wrapper.resolve(PositionProvider)
        self.parents = wrapper.resolve(ParentNodeProvider)
        self.module = wrapper.module
        self.libraries = self._libraries()
        for node in list(self.positions):
            if isinstance(node, cst.Call):
                self._call(node)
        for node in list(self.positions):
            if isinstance(node, cst.FunctionDef):
                self._decorated(node)

    def _top(self, node: Any) -> Any:
        while self.parents.get(node) is not None and not isinstance(self.parents.get(node), cst.Module):
            node = self.parents[node]
        return node

    def _at(self, node: Any, defines: bool = False) -> None:
        top = self._top(node)
        self.line = max(self.line, self.positions[top].end.line)
        if defines:
            self.define_line = self.positions[top].start.line

    def _libraries(self) -> dict[str, str]:
        """Variable -> namespace of every ``X = Library("ns", ...)``."""
        out = {}
        for node in self.positions:
            if isinstance(node, cst.Assign) and isinstance(node.value, cst.Call) \
                    and _code(node.value.func).split(".")[-1] == "Library" and node.value.args:
                ns = _str(node.value.args[0].value)
                for t in node.targets:
                    if ns and isinstance(t.target, cst.Name):
                        out[t.target.value] = ns
        return out

    def _lib_of(self, call: cst.Call) -> Optional[str]:
        """The namespace of a ``lib.method(...)`` call's library ('' when not a Library variable)."""
        if isinstance(call.func, cst.Attribute) and isinstance(call.func.value, cst.Name):
            return self.libraries.get(call.func.value.value)
        return None

    def _names_op(self, value: Optional[str], qualified_only: bool = False) -> bool:
        if value is None:
            return False
        return value == self.qual or (not qualified_only and value == self.name)

    def _call(self, call: cst.Call) -> None:
        func = _code(call.func)
        method = func.split(".")[-1]
        first = _str(call.args[0].value) if call.args else None
        lib = self._lib_of(call)
        if method == "custom_op" and self._names_op(first, qualified_only=True):
            return  # the decorated def is read in _decorated
        if lib == self.namespace and method == "define" and first and re.match(rf"{re.escape(self.name)}[(.]", first):
            self.dialect = self.dialect or LIBRARY
            self._at(call, defines=True)
        elif method == "define" and func.startswith("torch.library") and self._names_op(first, qualified_only=True):
            self.dialect = self.dialect or LIBRARY
            self._at(call, defines=True)
        elif lib == self.namespace and method == "impl" and first == self.name and len(call.args) > 1:
            self.kernel = self.kernel or _name_of(call.args[1].value)
            self._at(call)
        elif method == "impl" and func.startswith("torch.library") and self._names_op(first, qualified_only=True):
            outer = self.parents.get(call)  # torch.library.impl("ns::op", "CPU")(fn)
            if isinstance(outer, cst.Call) and outer.func is call and outer.args:
                self.kernel = self.kernel or _name_of(outer.args[0].value)
            self._at(call)
        elif method == "_register_fake" and lib == self.namespace and first == self.name and len(call.args) > 1:
            self._fake(_name_of(call.args[1].value), "call")
        elif method == "register_fake" and self._names_op(first, qualified_only=True) and len(call.args) > 1:
            self._fake(_name_of(call.args[1].value), "call")
        elif method == "direct_register_custom_op":
            self._direct(call)

    def _fake(self, fake: str, form: str, marker: str = "") -> None:
        if not self.fake_form:
            self.fake, self.fake_form, self.fake_marker = fake, form, marker

    def _direct(self, call: cst.Call) -> None:
        op_name = arg(call, "op_name", 0)
        if op_name is None or _str(op_name.value) != self.name:
            return
        target = arg(call, "target_lib", 4)
        if target is not None:
            lib = _code(target.value)
            if self.libraries.get(lib, self.namespace) != self.namespace:
                return
        elif self.namespace not in ("vllm", "sglang"):  # the helper's default library
            return
        self.dialect = DIRECT
        self._at(call, defines=True)
        op_func = arg(call, "op_func", 1)
        self.kernel = _name_of(op_func.value) if op_func is not None else ""
        fake = arg(call, "fake_impl", 3)
        if fake is not None and _code(fake.value) != "None":
            self._fake(_name_of(fake.value), "keyword")

    def _decorated(self, fn: cst.FunctionDef) -> None:
        for d in fn.decorators:
            call = d.decorator if isinstance(d.decorator, cst.Call) else None
            code = _code(call.func if call else d.decorator)
            method = code.split(".")[-1]
            first = _str(call.args[0].value) if call is not None and call.args else None
            if method == "custom_op" and self._names_op(first, qualified_only=True):
                self.dialect, self.kernel = CUSTOM_OP, fn.name.value
                self._at(fn, defines=True)
            elif method == "register_custom_op" and self.namespace == "sglang":
                op_name = arg(call, "op_name") if call is not None else None
                if (_str(op_name.value) if op_name is not None else fn.name.value) == self.name:
                    self.dialect, self.kernel = SGLANG, fn.name.value
                    self._at(fn, defines=True)
                    fake = arg(call, "fake_impl") if call is not None else None
                    if fake is not None:
                        self._fake(_name_of(fake.value), "keyword")
                    elif call is not None and arg(call, "out_shape") is not None:
                        self._fake("", "out_shape")
            elif method == "impl" and code.startswith("torch.library") and self._names_op(first, qualified_only=True):
                self.kernel = self.kernel or fn.name.value
            elif method == "register_fake" and (self._names_op(first, qualified_only=True)
                                                or (self.kernel and code == f"{self.kernel}.register_fake")):
                self._fake(fn.name.value if fn.name.value != "_" else "", "decorator", _code(d.decorator))
        if self.dialect == CUSTOM_OP and not self.fake_form:  # @kernel.register_fake, anywhere below
            for node in self.positions:
                if isinstance(node, cst.FunctionDef) and any(_code(d.decorator) == f"{self.kernel}.register_fake"
                                                             for d in node.decorators):
                    self._fake(node.name.value if node.name.value != "_" else "", "decorator",
                               f"{self.kernel}.register_fake")


def _name_of(node: Any) -> str:
    return node.value if isinstance(node, cst.Name) else (_code(node) if node is not None else "")
