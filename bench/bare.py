"""Baselines for bench/run.py: the same target, with bare torch.compile or torch._dynamo.explain."""

import importlib.util
import sys

import torch

path, factory, mode, sizes = sys.argv[1], sys.argv[2], sys.argv[3], [int(s) for s in sys.argv[4].split(",")]
spec = importlib.util.spec_from_file_location("bench_target", path)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
make = getattr(mod, factory)
module, _ = make(tokens=sizes[0])
if mode == "compile":
    compiled = torch.compile(module, backend="eager")
    for t in sorted(sizes, reverse=True):
        with torch.no_grad():
            compiled(*make(tokens=t)[1])
elif mode == "explain":
    for t in sorted(sizes, reverse=True):
        torch._dynamo.explain(module)(*make(tokens=t)[1])
