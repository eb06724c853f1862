"""Run sglang's own piecewise CUDA-graph path on a target and print what it captured (JSON on stdout).

    python tests/gpu/sglang_oracle.py SPEC SIZES SPLIT_OPS_JSON

sglang 0.5.23's code does the work: ``SGLangBackend`` (split_graph, PiecewiseCompileInterpreter) and
``CUDAPiecewiseBackend`` (warm-up, capture into the shared pool on the capture stream), driven the
way its runner drives them: ``torch.compile(fullgraph=True)``, the compile pass under
``enable_torch_compile_warmup`` (largest size first, current stream), then per size two forwards on
the capture stream under ``set_pcg_capture_stream`` (``capture_one``). One helper is replaced:
``weak_ref_tensor`` comes from sglang's CUDA kernel package, which does not install here, so a stub
returns the tensor itself (a strong reference: outputs stay alive a little longer). The backend's
``__call__`` is wrapped only to record, per size and piece, whether a CUDA graph was captured.
"""

import json
import socket
import sys
import types


def _stub_weak_ref() -> None:
    name = "sglang.srt.model_executor.runner_backend_utils.weak_ref_tensor"
    stub = types.ModuleType(name)
    stub.weak_ref_tensor = lambda t: t
    stub.weak_ref_tensors = lambda t: t
    sys.modules[name] = stub


def _init_single_rank() -> None:
    import torch.distributed as dist

    with socket.socket() as s:  # SGLangBackend asks torch.distributed for its rank
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)


def main(spec: str, sizes: list[int], split_ops: list[str]) -> dict:
    _stub_weak_ref()
    _init_single_rank()
    import torch

    from pcg_inspect.load import load, tensor_at
    from sglang.srt.compilation import cuda_piecewise_backend as cpb
    from sglang.srt.compilation.backend import SGLangBackend
    from sglang.srt.compilation.compilation_config import CompilationConfig
    from sglang.srt.compilation.compile_phase import enable_torch_compile_warmup, set_pcg_capture_stream

    target = load(spec, tuple(sizes), device="cuda")
    config = CompilationConfig(capture_sizes=sorted(sizes), compiler="eager")
    for op in split_ops:  # sglang matches str(node.target) exactly: both spellings Dynamo records
        config.add_split_op(op)
        config.add_split_op(op + ".default")
    pool = torch.cuda.graph_pool_handle()
    backends, status = [], {}

    def factory(gm, example_inputs):
        backend = SGLangBackend(config, pool)
        backends.append(backend)
        return backend(gm, example_inputs)

    original = cpb.CUDAPiecewiseBackend.__call__

    def recording(self, *args):
        size = args[self.sym_shape_indices[0]] if self.sym_shape_indices else None
        entry = self.concrete_size_entries.get(size)
        before = entry.cudagraph if entry is not None else None
        piece = [it.graph_id for it in self.sglang_backend.piecewise_graphs if not it.is_splitting_graph][self.piecewise_compile_index]
        try:
            out = original(self, *args)
        except Exception as exc:
            status[f"{size}:{piece}"] = ["capture_failed", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"]
            raise
        if entry is not None and before is None and entry.cudagraph is not None:
            status[f"{size}:{piece}"] = ["captured", ""]
        return out

    cpb.CUDAPiecewiseBackend.__call__ = recording
    compiled = torch.compile(target.module, fullgraph=True, backend=factory)
    calls = sorted(target.calls, key=lambda c: -c.tokens)
    result = {"status": status, "pieces": [], "error": ""}
    try:
        with torch.no_grad():
            _run(compiled, calls, torch, enable_torch_compile_warmup, set_pcg_capture_stream)
    except Exception as exc:  # where the server would stop
        result["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
    if backends:
        result["pieces"] = [[it.graph_id, it.is_splitting_graph] for it in backends[0].piecewise_graphs]
    return result


def _run(compiled, calls, torch, warmup, capture_stream) -> None:
    import torch._dynamo

    from pcg_inspect.load import tensor_at

    for call in calls:  # sglang marks the token dims dynamic before the first compile
        for path, dim in call.token_dims.items():
            torch._dynamo.maybe_mark_dynamic(tensor_at(call, path), dim)
    with warmup():  # the compile pass: every size, largest first, on the current stream
        for call in calls:
            compiled(*call.args, **call.kwargs)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())  # graph_capture(): then the capture stream is current
    with torch.cuda.stream(stream), capture_stream(stream):
        for call in calls:
            for _ in range(2):  # capture_one: call 1 warms up, call 2 captures
                torch.cuda.synchronize()
                compiled(*call.args, **call.kwargs)


if __name__ == "__main__":
    out = main(sys.argv[1], [int(s) for s in sys.argv[2].split(",")], json.loads(sys.argv[3]))
    print("ORACLE-JSON " + json.dumps(out), flush=True)
