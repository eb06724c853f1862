"""sglang 0.5.23's own breakable CUDA-graph capture (``BreakableCUDAGraphCapture`` + ``eager_on_graph``), run on a
target, as the oracle for our ``--backend breakable``.

Its module is read from sglang itself: an installed sglang, else the 0.5.23 wheel carried in ``.whl/`` (the device
has no sglang), extracted into a folder that ``sglang_path()`` puts on ``sys.path`` (and a test on ``PYTHONPATH``, for
pcg-inspect's children): sglang's own ``breakable_cuda_graph.py`` and ``cuda_utils.py``, under stand-ins for the rest
of sglang — ``sglang.srt.utils`` (which device module: torch.cuda), ``weak_ref_tensor`` (needs the compiled
``sgl_kernel``; identity here: a strong reference instead of a weak one changes memory lifetime, not what replays)
and a package ``__init__`` that exports what the module defines. Targets that import ``eager_on_graph`` from sglang
get that same module. The target's break ops (``BREAK_OPS``: ops the engine calls from an ``@eager_on_graph``
function) become ``eager_on_graph`` calls for the run: every Python name bound to the op (a ``custom_op`` object in
the target's module, ``torch.ops.ns.op``) is replaced by the decorated call.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[2]
_PACKAGE = "sglang/srt/model_executor/runner_backend_utils/breakable_cuda_graph/"
_STUBS = {
    "sglang/__init__.py": "",
    "sglang/srt/__init__.py": "",
    "sglang/srt/utils/__init__.py": "import torch\n\ndef get_device_module():\n    return torch.cuda\n\n"
                                    "def is_hip():\n    return False\n\ndef is_xpu():\n    return False\n",
    "sglang/srt/model_executor/__init__.py": "",
    "sglang/srt/model_executor/runner_backend_utils/__init__.py": "",
    "sglang/srt/model_executor/runner_backend_utils/weak_ref_tensor.py": "def weak_ref_tensors(t):\n    return t\n",
    _PACKAGE + "__init__.py": "from .breakable_cuda_graph import (BreakableCUDAGraph, BreakableCUDAGraphCapture,  # noqa\n"
                              "                                   break_graph, eager_on_graph)\n",
}


_FOUND: list = []


def sglang_path() -> Optional[str]:
    """'' when sglang is installed, else the folder holding sglang's breakable module from the wheel (on
    ``sys.path`` after this call); None when neither is here. Decided once per process (after the first call the
    folder is on sys.path and sglang imports from it)."""
    if not _FOUND:
        _FOUND.append(_find())
    return _FOUND[0]


def _find() -> Optional[str]:
    try:
        importlib.import_module("sglang.srt.model_executor.runner_backend_utils.breakable_cuda_graph.breakable_cuda_graph")
        return ""
    except Exception:
        pass
    wheel = next(iter(sorted((ROOT / ".whl").glob("sglang-0.5.23-*.whl"))), None)
    if wheel is None:
        return None
    folder = Path(tempfile.gettempdir()) / "pcg-sglang-bcg"
    if not (folder / _PACKAGE / "breakable_cuda_graph.py").exists():
        with zipfile.ZipFile(wheel) as z:
            for name in ("breakable_cuda_graph.py", "cuda_utils.py"):
                z.extract(_PACKAGE + name, folder)
        for rel, text in _STUBS.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(text)
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return str(folder)


def load_sglang_breakable():
    """sglang's breakable_cuda_graph module (None when neither sglang nor its wheel is here)."""
    if sglang_path() is None:
        return None
    return importlib.import_module("sglang.srt.model_executor.runner_backend_utils.breakable_cuda_graph.breakable_cuda_graph")


def sglang_breakable(spec: str, sizes=(16, 8)) -> list[dict]:
    """Per size (largest first): capture the target's forward with sglang's BreakableCUDAGraphCapture (two warm-ups
    on the capture stream, one shared pool), replay on fresh inputs, compare with eager."""
    import torch

    from pcg_inspect.load import load
    from pcg_inspect.opnames import normalise_op_name
    from pcg_inspect.replay.common import compare, fresh_like

    bcg = load_sglang_breakable()
    target = load(spec, tuple(sizes), "cuda", None)
    module_globals = vars(sys.modules[type(target.module).__module__])
    restore = _as_breaks(bcg, [normalise_op_name(o) for o in target.break_ops], module_globals)
    stream, pool = torch.cuda.Stream(), torch.cuda.graph_pool_handle()
    out, graphs = [], []  # every size's graph stays alive, as in sglang's runner (the shared pool's use count)
    try:
        for call in sorted(target.calls, key=lambda c: -(c.tokens or 0)):
            static = [a.detach().clone() if isinstance(a, torch.Tensor) else a for a in call.args]
            row = {"size": call.tokens, "captured": False, "error": "", "ok": None}
            with torch.no_grad(), torch.cuda.stream(stream):
                for _ in range(2):
                    target.module(*static)
            torch.cuda.synchronize()
            graph = bcg.BreakableCUDAGraph()
            graphs.append(graph)
            try:
                with torch.no_grad(), bcg.BreakableCUDAGraphCapture(cuda_graph=graph, pool=pool, stream=stream):
                    result = target.module(*static)
                row["captured"] = True
            except Exception as exc:
                row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
                out.append(row)
                break  # the CUDA context may be gone
            gen = torch.Generator(device="cuda")
            gen.manual_seed(2000 + (call.tokens or 0))
            for buf in static:
                if isinstance(buf, torch.Tensor):
                    buf.copy_(fresh_like(buf, gen))
            with torch.no_grad():
                graph.replay()
                torch.cuda.synchronize()
                replayed = result.clone()
                eager = target.module(*[a.clone() if isinstance(a, torch.Tensor) else a for a in static])
            row["ok"] = compare(replayed, eager)[2]
            out.append(row)
    finally:
        restore()
    return out


def _as_breaks(bcg, ops: list[str], module_globals: dict):
    """Every Python name bound to a break op calls it through ``eager_on_graph``; returns the undo."""
    import torch

    undo = []
    for qual in ops:
        ns, name = qual.split(".", 1)
        packet = getattr(getattr(torch.ops, ns), name)
        wrapped = bcg.eager_on_graph(lambda *a, _p=packet, **k: _p(*a, **k))
        namespace = getattr(torch.ops, ns)
        undo.append((namespace, name, packet))
        setattr(namespace, name, wrapped)
        for key, value in list(module_globals.items()):
            if getattr(value, "_qualname", None) == qual.replace(".", "::", 1):  # a torch.library.custom_op object
                undo.append((module_globals, key, value))
                module_globals[key] = wrapped

    def restore() -> None:
        for owner, key, value in reversed(undo):
            if isinstance(owner, dict):
                owner[key] = value
            else:
                setattr(owner, key, value)

    return restore


if __name__ == "__main__":
    import json

    load_sglang_breakable()  # before the target imports eager_on_graph from sglang
    print(json.dumps(sglang_breakable(sys.argv[1], tuple(int(s) for s in sys.argv[2].split(",")))))
