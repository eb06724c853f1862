"""`fix` in every op-registration dialect engines use, for every fixable op kind (issue #26's table).

One target per dialect (tests/targets/dialects/), one op per kind in it. Each dialect's target is copied, fixed
with --write once (module fixture), and each (dialect, kind) row checks: the finding was there before, the edit
landed in that dialect's own form, the written files import and trace capturable with the op's finding gone, and
the layer's eager output is bit-for-bit what it was. In C++ (TORCH_LIBRARY) a schema or kernel edit needs a
rebuild: those rows check that fix edits nothing there and states the exact edit instead.
"""

import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, TARGETS

DIALECTS = TARGETS / "dialects"
EAGER = ("import sys, torch; from pcg_inspect.load import load; t = load(sys.argv[1], (8,)); c = t.calls[0];"
         "torch.save(t.module(*c.args, **c.kwargs).detach(), sys.argv[2])")
SIZES = (8, 16)

# (file, namespace, op prefix); the extension's ops are split by what fix can edit (Python fakes vs C++ schema), and
# custom_op's output alias has a file of its own (torch refuses it eagerly: the layer's eager output is an error)
TARGET = {
    "custom_op_alias": ("custom_op_alias", "pcgd_co", ""),
    "custom_op": ("custom_op", "pcgd_co", ""),
    "library": ("library", "pcgd_lib", ""),
    "direct_register": ("direct_register", "pcgd_dr", ""),
    "sglang": ("sglang_ops", "sglang", "pcgd_"),
    "extension": ("extension", "pcgd_ext", ""),
    "extension_schema": ("extension_schema", "pcgd_ext", ""),
}

# kind -> (op, finding kind before the fix)
KINDS = {
    "missing_fake": ("scale2", "unregistered_op"),
    "lying_fake_shape": ("rowsum", "fake_impl_mismatch"),
    "lying_fake_dtype": ("halve", "fake_impl_mismatch"),
    "lying_fake_stride": ("colmajor", "fake_impl_mismatch"),
    "undeclared_mutation": ("store", "undeclared_mutation"),
    "overdeclared_mutation": ("double", "overdeclared_mutation"),
    "output_alias": ("flat", "output_aliases_input"),
}

# (dialect, kind) -> text the written files must contain: the edit in that dialect's own form
EDIT = {
    ("custom_op", "missing_fake"): "@scale2.register_fake\ndef _scale2_fake(x):\n    return torch.empty_like(x)",
    ("custom_op", "lying_fake_shape"): "@rowsum.register_fake\ndef _rowsum_fake(x):\n    return x.new_empty((x.shape[0], 1))",
    ("custom_op", "lying_fake_dtype"): "@halve.register_fake\ndef _halve_fake(x):\n    return torch.empty_like(x, dtype=torch.float64)",
    ("custom_op", "lying_fake_stride"): "@colmajor.register_fake\ndef _colmajor_fake(x):\n    return x.new_empty((x.shape[1], x.shape[0])).permute(1, 0)",
    ("custom_op", "undeclared_mutation"): '@torch.library.custom_op("pcgd_co::store", mutates_args=(\'cache\', ))',
    ("custom_op", "overdeclared_mutation"): '@torch.library.custom_op("pcgd_co::double", mutates_args=())',
    ("custom_op", "output_alias"): "        return x.view(-1).clone()  # a view of the input in this branch",
    ("library", "missing_fake"): '@torch.library.register_fake("pcgd_lib::scale2")\ndef _scale2_fake(x):',
    ("library", "lying_fake_shape"): "def _rowsum_fake(x):\n    return x.new_empty((x.shape[0], 1))\n\n\n_lib._register_fake(\"rowsum\", _rowsum_fake)",
    ("library", "lying_fake_dtype"): '@torch.library.register_fake("pcgd_lib::halve")\ndef _halve_fake(x):\n    return torch.empty_like(x, dtype=torch.float64)',
    ("library", "lying_fake_stride"): "def _colmajor_fake(x):\n    return x.new_empty((x.shape[1], x.shape[0])).permute(1, 0)",
    ("library", "undeclared_mutation"): '_lib.define("store(Tensor k, Tensor(a!) cache) -> ()")',
    ("library", "overdeclared_mutation"): '_lib.define("double(Tensor x, Tensor scratch) -> Tensor")',
    ("library", "output_alias"): "        return x.view(-1).clone()  # a view of the input in this branch",
    ("direct_register", "missing_fake"): 'def _scale2_fake(x):\n    return torch.empty_like(x)\n\n\ndirect_register_custom_op("scale2", scale2, [], target_lib=_lib, fake_impl=_scale2_fake)',
    ("direct_register", "lying_fake_shape"): "def _rowsum_fake(x):\n    return x.new_empty((x.shape[0], 1))",
    ("direct_register", "lying_fake_dtype"): "def _halve_fake(x):\n    return torch.empty_like(x, dtype=torch.float64)",
    ("direct_register", "lying_fake_stride"): "def _colmajor_fake(x):\n    return x.new_empty((x.shape[1], x.shape[0])).permute(1, 0)",
    ("direct_register", "undeclared_mutation"): "direct_register_custom_op(\"store\", store, mutates_args=['cache'],",
    ("direct_register", "overdeclared_mutation"): 'direct_register_custom_op("double", double, [], fake_impl=_same_fake',
    ("direct_register", "output_alias"): "        return x.view(-1).clone()  # a view of the input in this branch",
    ("sglang", "missing_fake"): "def _pcgd_scale2_fake(x):\n    return torch.empty_like(x)\n\n\n@register_custom_op(mutates_args=[], fake_impl=_pcgd_scale2_fake)",
    ("sglang", "lying_fake_shape"): "def _pcgd_rowsum_fake(x):\n    return x.new_empty((x.shape[0], 1))\n\n\n@register_custom_op(mutates_args=[], fake_impl=_pcgd_rowsum_fake)",
    ("sglang", "lying_fake_dtype"): "def _halve_fake(x):\n    return torch.empty_like(x, dtype=torch.float64)",
    ("sglang", "lying_fake_stride"): '@register_custom_op(op_name="pcgd_colmajor", mutates_args=[], fake_impl=_pcgd_colmajor_fake)',
    ("sglang", "undeclared_mutation"): "@register_split_op()\n@register_custom_op(mutates_args=['cache'])",
    ("sglang", "overdeclared_mutation"): "@register_custom_op(mutates_args=[], out_shape=0)\ndef pcgd_double(",
    ("sglang", "output_alias"): "        return x.view(-1).clone()  # a view of the input in this branch",
    ("extension", "missing_fake"): '@torch.library.register_fake("pcgd_ext::scale2")\ndef _scale2_fake(x):\n    return torch.empty_like(x)',
    ("extension", "lying_fake_shape"): '@torch.library.register_fake("pcgd_ext::rowsum")\ndef _rowsum_fake(x):\n    return x.new_empty((x.shape[0], 1))',
    ("extension", "lying_fake_dtype"): '@torch.library.register_fake("pcgd_ext::halve")\ndef _halve_fake(x):\n    return torch.empty_like(x, dtype=torch.float64)',
    ("extension", "lying_fake_stride"): '@torch.library.register_fake("pcgd_ext::colmajor")\ndef _colmajor_fake(x):\n    return x.new_empty((x.shape[1], x.shape[0])).permute(1, 0)',
}

# (dialect, kind) -> the decision fix states instead of an edit (C++ needs a rebuild)
DECISION = {
    ("extension_schema", "undeclared_mutation"): "schema is in C++ (extension.cpp:{line}): mark Tensor(a!) cache written there and rebuild",
    ("extension_schema", "overdeclared_mutation"): "schema is in C++ (extension.cpp:{line}): drop the (a!) of scratch there and rebuild",
    ("extension_schema", "output_alias"): "the kernel of pcgd_ext::flat is compiled code (extension.cpp:{line}): return a fresh tensor",
}
EXT_OPS = {"undeclared_mutation": "store", "overdeclared_mutation": "twice", "output_alias": "flat"}

ROWS = [pytest.param(d, k, id=f"{d}-{k}") for d, k in list(EDIT) + list(DECISION)]


def _target(dialect, kind):
    return "custom_op_alias" if (dialect, kind) == ("custom_op", "output_alias") else dialect


def _needs(dialect):
    if dialect in ("sglang", "direct_register"):
        pytest.importorskip("sglang.srt.utils.common", reason="the sglang dialects need sglang (bash .ci/run installs it)")


@pytest.fixture(scope="module")
def fixed(tmp_path_factory):
    """target -> (FixResult, eager output before (or the error it raised), eager output after, folder), made once each."""
    cache = {}

    def get(dialect):
        if dialect not in cache:
            cache[dialect] = _fix(dialect, tmp_path_factory.mktemp(dialect))
        return cache[dialect]

    return get


def _fix(dialect, tmp):
    from pcg_inspect import fix
    from pcg_inspect.options import TraceOptions

    stem = TARGET[dialect][0]
    folder = tmp / "layer"
    folder.mkdir()
    for source in [f"{stem}.py"] + (["extension.cpp"] if stem.startswith("extension") else []):
        shutil.copy(DIALECTS / source, folder / source)
    spec = f"{folder / stem}.py:make"
    before_out = _eager(spec, tmp / "before.pt")
    result = fix.run_fix(TraceOptions(target=spec, sizes=SIZES), write=True)
    after_out = _eager(spec, tmp / "after.pt")
    return result, before_out, after_out, folder


def _eager(spec, path):
    res = subprocess.run([sys.executable, "-c", EAGER, spec, str(path)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    if res.returncode:
        return res.stderr.strip().splitlines()[-1]
    import torch

    return torch.load(path)


def _cpp_line(text):
    return next(i for i, ln in enumerate((DIALECTS / "extension.cpp").read_text().splitlines(), 1) if text in ln)


def _op(dialect, kind):
    namespace, prefix = TARGET[dialect][1:]
    name = EXT_OPS[kind] if dialect == "extension_schema" else KINDS[kind][0]
    return f"{namespace}.{prefix}{name}"


@pytest.mark.parametrize("dialect, kind", ROWS)
def test_fix_speaks_the_dialect(fixed, dialect, kind):
    import torch

    _needs(dialect)
    result, before_out, after_out, folder = fixed(_target(dialect, kind))
    op, finding = _op(dialect, kind), KINDS[kind][1]
    if (dialect, kind) == ("sglang", "missing_fake"):  # register_custom_op without out_shape/fake_impl: a fake of None
        finding = "fake_impl_mismatch"
    assert any(f.kind == finding and f.op == op for f in result.before.findings), \
        [(f.kind, f.op) for f in result.before.findings]
    assert not result.broken, result.broken
    written = "".join(p.read_text() for p in sorted(folder.glob("*.py")))
    if (dialect, kind) in DECISION:  # C++: nothing edited, the exact edit stated
        line = _cpp_line(f'm.def("{EXT_OPS[kind]}(')
        why = [x.why for x in result.left if x.title.startswith(finding) and op in x.title]
        expected = DECISION[(dialect, kind)].format(line=line)
        assert why and expected in why[0], (why, expected)
        assert not result.written
        return
    assert EDIT[(dialect, kind)] in written, written
    after = result.after
    assert after is not None and after.capturable, after.to_text() if after else result.broken
    assert not [f for f in after.findings if f.op == op and f.severity in ("error", "warning")]
    assert result.written  # --write wrote the files that were traced
    if isinstance(before_out, str):  # torch.library.custom_op refused the aliasing output: the edit makes it run
        assert "may not alias any inputs" in before_out and not isinstance(after_out, str)
        return
    torch.testing.assert_close(after_out, before_out, rtol=0, atol=0)  # the edits change no eager output


def test_the_written_files_trace_capturable_from_the_cli(fixed):
    """`fix --write` leaves files that import and trace capturable on their own (not only the patched copy)."""
    result, _, _, folder = fixed("library")
    res = subprocess.run([sys.executable, "-m", "pcg_inspect", "trace", f"{folder / 'library.py'}:make", "--tokens", "8,16",
                          "--quiet"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]


def test_every_dialect_is_recognised_from_the_source():
    from pcg_inspect.fix import dialects

    for dialect, kind in list(EDIT) + list(DECISION):
        stem, namespace, prefix = TARGET[_target(dialect, kind)]
        name = _op(dialect, kind).split(".", 1)[1]
        reg = dialects.find(f"{namespace}::{name}", [DIALECTS / f"{stem}.py"], cpp_folder=DIALECTS)
        assert reg is not None and reg.dialect == dialect.replace("_schema", ""), (dialect, kind, reg)
    reg = dialects.find("pcgd_ext::twice", [DIALECTS / "extension_schema.py"], cpp_folder=DIALECTS)
    assert reg.file.endswith("extension.cpp") and reg.schema_line == _cpp_line('m.def("twice(')
    assert reg.fake_form == "decorator" and reg.fake_marker == 'torch.library.register_fake("pcgd_ext::twice")'
    reg = dialects.find("sglang::pcgd_colmajor", [DIALECTS / "sglang_ops.py"])  # op_name= differs from the function
    assert (reg.kernel, reg.fake_form) == ("colmajor_kernel", "out_shape")
    reg = dialects.find("pcgd_dr::halve", [DIALECTS / "direct_register.py"])  # fake_impl passed by position
    assert (reg.kernel, reg.fake, reg.fake_form) == ("halve", "_halve_fake", "keyword")
    assert dialects.find("pcgd_dr::halve", [DIALECTS / "library.py"]) is None  # same op name, other namespace
