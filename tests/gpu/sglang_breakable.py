"""sglang 0.5.23's own breakable CUDA-graph capture (``BreakableCUDAGraphCapture`` + ``eager_on_graph``), run on a
target, as the oracle for our ``--backend breakable``.

Its module is read from sglang itself: an installed sglang, else the 0.5.23 wheel carried in ``.whl/`` (the device
has no sglang). Only its two imports from the rest of sglang are stood in for: ``sglang.srt.utils`` (which device
module: torch.cuda) and ``weak_ref_tensor`` (needs the compiled ``sgl_kernel``; identity here: a strong reference
instead of a weak one changes memory lifetime, not what replays). The target's split ops become ``eager_on_graph``
break functions, as sglang's attention backends are: every Python name bound to the op (a ``custom_op`` object in
the target's module, ``torch.ops.ns.op``) is replaced by the decorated call for the run.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import types
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_MODULE = "sglang/srt/model_executor/runner_backend_utils/breakable_cuda_graph/"


def load_sglang_breakable():
    """sglang's breakable_cuda_graph module (None when neither sglang nor its wheel is here)."""
    try:
        from sglang.srt.model_executor.runner_backend_utils.breakable_cuda_graph import breakable_cuda_graph

        return breakable_cuda_graph
    except Exception:
        pass
    wheel = next(iter(sorted((ROOT / ".whl").glob("sglang-0.5.23-*.whl"))), None)
    if wheel is None:
        return None
    import torch

    folder = Path(tempfile.mkdtemp(prefix="sglang-bcg-"))
    with zipfile.ZipFile(wheel) as z:
        for name in ("breakable_cuda_graph.py", "cuda_utils.py"):
            z.extract(_MODULE + name, folder)
    stubs = {
        "sglang": {}, "sglang.srt": {}, "sglang.srt.model_executor": {}, "sglang.srt.model_executor.runner_backend_utils": {},
        "sglang.srt.model_executor.runner_backend_utils.breakable_cuda_graph": {},
        "sglang.srt.utils": {"get_device_module": lambda: torch.cuda, "is_hip": lambda: False, "is_xpu": lambda: False},
        "sglang.srt.model_executor.runner_backend_utils.weak_ref_tensor": {"weak_ref_tensors": lambda t: t},
    }
    for name, attrs in stubs.items():
        mod = sys.modules.setdefault(name, types.ModuleType(name))
        mod.__path__ = []  # a package, for the submodule imports
        vars(mod).update(attrs)
    loaded = None
    for name in ("cuda_utils", "breakable_cuda_graph"):
        full = "sglang.srt.model_executor.runner_backend_utils.breakable_cuda_graph." + name
        spec = importlib.util.spec_from_file_location(full, folder / _MODULE / f"{name}.py")
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[full] = loaded
        spec.loader.exec_module(loaded)
    return loaded


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
    restore = _as_breaks(bcg, [normalise_op_name(o) for o in target.split_ops], module_globals)
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
    """Every Python name bound to a split op calls it through ``eager_on_graph``; returns the undo."""
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

    print(json.dumps(sglang_breakable(sys.argv[1], tuple(int(s) for s in sys.argv[2].split(",")))))
