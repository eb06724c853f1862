"""The layout is the pipeline: imports flow one way, no private names cross modules, short functions.

Read from the source with ``ast`` (function-level imports count: a lazy import is still a dependency).
"""

import ast
from pathlib import Path

from conftest import ROOT

PKG = ROOT / "pcg_inspect"
FRONT_ENDS = ("pcg_inspect.cli", "pcg_inspect.api", "pcg_inspect.testing", "pcg_inspect.__main__", "pcg_inspect.fix",
              "pcg_inspect.plan")  # fix and plan drive runs (re-traces, samples) like the CLI does
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            for sub in node.body:
                lines.update(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))
    return lines


def _imports() -> dict[str, list[tuple[str, list[str]]]]:
    """module -> [(imported module, names)] for every import inside pcg_inspect (TYPE_CHECKING blocks excluded)."""
    mods = _modules()
    out: dict[str, list[tuple[str, list[str]]]] = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        skip = _type_checking_lines(tree)
        edges = []
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            if isinstance(node, ast.ImportFrom):
                target = _resolve(name, path.name == "__init__.py", node)
                names = [a.name for a in node.names]
                for n in names:  # `from . import launch` imports a module
                    if f"{target}.{n}" in mods:
                        edges.append((f"{target}.{n}", []))
                edges.append((target, [n for n in names if f"{target}.{n}" not in mods]))
            elif isinstance(node, ast.Import):
                edges += [(a.name, []) for a in node.names]
        out[name] = [(t, n) for t, n in edges if t.startswith("pcg_inspect")]
    return out


def _owner(target: str, mods: dict[str, Path]) -> str:
    while target and target not in mods:
        target = target.rpartition(".")[0]
    return target


def test_no_import_cycle():
    mods = _modules()
    graph = {m: {_owner(t, mods) for t, _ in edges} - {m, "pcg_inspect"} for m, edges in _imports().items()}
    graph = {m: {t for t in ts if t and not m.startswith(t + ".")} for m, ts in graph.items()}  # a package's own __init__
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(t):] + [t]))
            if state.get(t) is None:
                visit(t)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_no_private_name_crosses_modules():
    bad = []
    for module, edges in _imports().items():
        for target, names in edges:
            for n in names:
                if n.startswith("_") and not n.startswith("__") and target != module:
                    bad.append(f"{module} imports {target}.{n}")
    assert not bad, bad


def test_only_front_ends_import_run_and_cli():
    bad = []
    for module, edges in _imports().items():
        for target, _ in edges:
            for layer in ("pcg_inspect.run", "pcg_inspect.cli"):
                if (target == layer or target.startswith(layer + ".")) and not module.startswith(FRONT_ENDS + (layer,)):
                    if module != "pcg_inspect":  # the package's lazy public API
                        bad.append(f"{module} imports {target}")
    assert not bad, bad


def test_only_the_supervisor_starts_processes():
    """Every child goes through run/supervise.py: nothing else imports subprocess or multiprocessing, or forks."""
    bad = []
    for name, path in _modules().items():
        if name == "pcg_inspect.run.supervise":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                bad += [f"{name} imports {a.name}" for a in node.names if a.name.split(".")[0] in ("subprocess", "multiprocessing")]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("subprocess", "multiprocessing"):
                bad.append(f"{name} imports from {node.module}")
            elif isinstance(node, ast.Attribute) and node.attr in ("fork", "forkpty", "spawnv", "system", "posix_spawn") \
                    and isinstance(node.value, ast.Name) and node.value.id == "os":
                bad.append(f"{name} calls os.{node.attr}")
    assert not bad, bad


def test_the_front_end_process_never_imports_torch(tmp_path):
    """The CLI parent supervises; torch is imported in the child only (a usage error answers fast)."""
    import subprocess
    import sys

    code = ("import sys\nfrom typer.testing import CliRunner\nfrom pcg_inspect.cli import app\n"
            f"r = CliRunner().invoke(app, ['trace', {str(ROOT / 'examples' / 'nsa_indexer' / 'after.py') + ':make'!r}, "
            "'--tokens', '8', '--quiet'])\n"
            "assert r.exit_code == 0, r.output\nprint('torch' in sys.modules)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == "False"


def test_views_and_diff_never_call_stages():
    stages = ("pcg_inspect.load", "pcg_inspect.trace", "pcg_inspect.analyze", "pcg_inspect.split", "pcg_inspect.replay",
              "pcg_inspect.pipeline", "pcg_inspect.tp")
    bad = [f"{m} imports {t}" for m, edges in _imports().items() if m.startswith(("pcg_inspect.render", "pcg_inspect.diff"))
           for t, _ in edges if t.startswith(stages)]
    assert not bad, bad


def test_private_torch_only_in_compat():
    needles = ("torch._dynamo", "torch._C", "torch._subclasses", "torch._logging", "torch._library", "torch.utils._",
               "torch._guards", "torch._inductor", "._schema")
    bad = []
    for name, path in _modules().items():
        if name == "pcg_inspect._torch_compat":
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if any(n in code for n in needles) and '"' not in code and "'" not in code:
                bad.append(f"{path.name}:{i}: {line.strip()}")
    assert not bad, bad


def test_no_long_functions():
    long = []
    for path in PKG.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = node.body[0]
                if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant):
                    first = node.body[1] if len(node.body) > 1 else first  # the docstring is not the body
                lines = (node.end_lineno or node.lineno) - first.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def test_every_finding_kind_produced_is_declared_once_with_its_record_and_text():
    """Each `Finding(kind="...")` in the code names a declared kind; each declared kind has its catalog text."""
    import re

    from pcg_inspect import kinds as registry

    produced = set()
    for name, path in _modules().items():
        produced |= set(re.findall(r'kind="([a-z_]+)"', path.read_text()))
    produced -= {"stage", "progress"}
    assert produced, "no finding kinds found"
    unknown = {k for k in produced if not registry.known(k)}
    assert not unknown, unknown
    for kind in registry.all_kinds():
        assert kind.title and kind.severity and kind.means, kind.name
        assert not (kind.break_category and kind.details is not registry.Details), kind.name


def test_no_kind_literal_is_compared_outside_the_registry():
    """`kind == "capture_failed"` and `kind in ("a", "b")` only in kinds.py: elsewhere code asks the registry."""
    from pcg_inspect import kinds as registry

    names = {k.name for k in registry.all_kinds()}
    bad = []
    for name, path in _modules().items():
        if name == "pcg_inspect.kinds":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            mentions_kind = any((isinstance(x, ast.Name) and "kind" in x.id) or (isinstance(x, ast.Attribute) and "kind" in x.attr)
                                or (isinstance(x, ast.Subscript) and isinstance(x.slice, ast.Constant) and x.slice.value == "kind")
                                for x in sides)
            literals = {c.value for x in sides for c in ast.walk(x) if isinstance(c, ast.Constant) and isinstance(c.value, str)}
            if mentions_kind and literals & names:
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {sorted(literals & names)}")
    assert not bad, bad


def test_flow_one_way_models_import_no_view_and_analysis_no_split():
    """The model (report and what it is made of) never imports a view; analysis, which runs before the split,
    never imports the split stage (op names live on the ground floor, opnames.py)."""
    model = ("pcg_inspect.report", "pcg_inspect.details", "pcg_inspect.kinds", "pcg_inspect.options", "pcg_inspect.errors",
             "pcg_inspect.frames", "pcg_inspect.opnames", "pcg_inspect.stops")
    bad = []
    for module, edges in _imports().items():
        for target, _ in edges:
            if module in model and target.startswith(("pcg_inspect.render", "pcg_inspect.cli")):
                bad.append(f"{module} imports {target}")
            if module.startswith("pcg_inspect.analyze") and target.startswith("pcg_inspect.split"):
                bad.append(f"{module} imports {target}")
    assert not bad, bad


def test_a_name_means_one_thing():
    """No two classes share a name; the trace and replay stages' functions are not named like their modules
    (trace.trace_target, replay.replay_pieces: `trace` is the command and `run.trace`, `replay` the option and the
    report field)."""
    import collections

    classes = collections.defaultdict(list)
    functions = {}
    for name, path in _modules().items():
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                classes[node.name].append(name)
            if isinstance(node, ast.FunctionDef):
                functions.setdefault(name, set()).add(node.name)
    assert not {c: ms for c, ms in classes.items() if len(ms) > 1}
    for module in ("pcg_inspect.trace", "pcg_inspect.replay"):
        assert module.rsplit(".", 1)[-1] not in functions[module], module
