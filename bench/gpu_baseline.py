"""The hand-written baseline for `trace --device cuda`: what the engine itself does, and nothing else.

    python bench/gpu_baseline.py TARGET SIZES [DTYPE] [LAYERS] [NUM_LAYERS]

Builds the target (the same way the tool does; NUM_LAYERS > 0: the whole model with that many layers), compiles
it with torch.compile(fullgraph=True) and a backend that cuts the graph at the split ops (sglang's rule,
split_module(keep_original_order=True)) and captures every non-split piece per size: the compile pass (one forward
per size, largest first), then per size one warm-up and one capture forward on a side stream into one shared
pool, a piece's output not kept (sglang keeps a weak reference), the garbage collector frozen (sglang's
freeze_gc). No analysis, no checks. Prints the wall time of
the whole process, the capture session's seconds and the shared pool's bytes (what `plan` forecasts).
"""

import contextlib
import gc
import sys
import time
from unittest import mock

T0 = time.perf_counter()

import torch  # noqa: E402
from torch.fx.passes.split_module import split_module  # noqa: E402

from pcg_inspect.load import load, tensor_at  # noqa: E402
from pcg_inspect.options import ModelOptions  # noqa: E402
from pcg_inspect.split import assign_pieces, is_split_node, normalise_op_name  # noqa: E402


class Piece:
    """One non-split piece: eager until its size was seen once, then a CUDA graph per size."""

    def __init__(self, module, state):
        self.module, self.state, self.graphs = module, state, {}

    def __call__(self, *args):
        key = tuple(a.shape for a in args if isinstance(a, torch.Tensor))
        phase = self.state["phase"]
        if phase != "capture":
            return self.module(*args)
        assert key not in self.graphs, "one capture per piece and size"
        graph = torch.cuda.CUDAGraph()
        with contextlib.ExitStack() as stack:
            if not self.state.pop("first", False):  # sglang: gc and empty_cache for a forward's first piece only
                stack.enter_context(mock.patch("gc.collect", lambda *a: 0))
                stack.enter_context(mock.patch.object(torch.cuda, "empty_cache", lambda: None))
            with torch.cuda.graph(graph, pool=self.state["pool"], stream=self.state["stream"]):
                out = self.module(*args)
        self.graphs[key] = graph  # the output is handed on, not kept: its memory returns to the pool
        return out


def main(spec, sizes, dtype, layers, num_layers=0):
    target = load(spec, sizes, "cuda", dtype, ModelOptions(layers=layers, num_layers=num_layers) if ":" not in spec else None)
    ops = frozenset(normalise_op_name(o) for o in target.split_ops)
    state = {"phase": "warmup", "pool": torch.cuda.graph_pool_handle(), "stream": torch.cuda.Stream()}

    def backend(gm, example_inputs):
        mapping = assign_pieces(gm, ops)
        split_ids = {mapping[n] for n in mapping if is_split_node(n, ops)}
        split_gm = split_module(gm, None, lambda n: mapping[n], keep_original_order=True)
        for name, sub in list(split_gm.named_children()):
            if int(name.split("_")[1]) not in split_ids:
                split_gm.__dict__[name] = Piece(sub, state)
        return split_gm

    calls = sorted(target.calls, key=lambda c: -c.tokens)
    for call in calls:
        for path, dim in call.token_dims.items():
            torch._dynamo.maybe_mark_dynamic(tensor_at(call, path), dim)
    compiled = torch.compile(target.module, fullgraph=True, backend=backend)
    with torch.no_grad():
        for call in calls:  # the compile pass
            compiled(*call.args, **call.kwargs)
        torch.cuda.synchronize()
        gc.collect()
        gc.freeze()  # sglang's freeze_gc around the capture session
        t0 = time.perf_counter()
        with torch.cuda.stream(state["stream"]):
            for call in calls:
                state["phase"] = "warmup"
                compiled(*call.args, **call.kwargs)
                state["phase"], state["first"] = "capture", True
                compiled(*call.args, **call.kwargs)
        torch.cuda.synchronize()
    capture_s = time.perf_counter() - t0
    wanted = tuple(state["pool"])
    pool = sum(seg["total_size"] for seg in torch.cuda.memory_snapshot() if tuple(seg.get("segment_pool_id", ())) == wanted)
    print(f"capture_s {capture_s:.2f}\npool_bytes {pool}\npeak_bytes {torch.cuda.max_memory_allocated()}")


if __name__ == "__main__":
    main(sys.argv[1], tuple(int(s) for s in sys.argv[2].split(",")), sys.argv[3] if len(sys.argv) > 3 else None,
         sys.argv[4] if len(sys.argv) > 4 else "0", int(sys.argv[5]) if len(sys.argv) > 5 else 0)
    print(f"baseline_s {time.perf_counter() - T0:.2f}")
