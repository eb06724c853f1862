"""GPU benchmark (run on the device): whole `trace --device cuda` against the hand-written baseline, and
full-size layers, alone and across 2 GPUs. Prints Markdown; docs/performance.md quotes it.

    python bench/gpu.py [--repeat 3] [--only ratio,full,tp]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")


def whole(cmd, timeout=560):
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)
    return time.perf_counter() - t0, proc


def trace(target, tokens, *extra):
    out = Path(tempfile.mkdtemp()) / "r.json"
    wall, proc = whole([sys.executable, "-m", "pcg_inspect", "trace", target, "--device", "cuda", "--tokens", tokens,
                        "--quiet", "--json", str(out), *extra])
    report = json.loads(out.read_text()) if out.exists() else None
    if report is None:
        print(f"<!-- {target} failed: {proc.stderr[-800:]} -->")
    return wall, report


def ratio(repeat, target, tokens, dtype="", layers="0"):
    base, ours = [], []
    for _ in range(repeat):
        b_wall, proc = whole([sys.executable, "bench/gpu_baseline.py", target, tokens] + ([dtype, layers] if dtype else []))
        if proc.returncode != 0:
            print(f"<!-- baseline failed: {proc.stderr[-800:]} -->")
        base.append(b_wall)
        ours.append(trace(target, tokens, *(["--dtype", dtype, "--layers", layers] if dtype else []))[0])
    b, o = statistics.median(base), statistics.median(ours)
    print(f"| {target} {dtype} | {tokens} | {o:.1f} s ({min(ours):.1f}–{max(ours):.1f}) | {b:.1f} s ({min(base):.1f}–{max(base):.1f}) | {o / b:.2f}x |")


def size_table(name, wall, report):
    if report is None:
        print(f"| {name} | {wall:.1f} s | failed | | | |")
        return
    rp = report.get("replay") or {"sizes": [], "status": "-"}
    peak = max((s["peak_mem_bytes"] for s in rp["sizes"]), default=0) / 2**30
    pool = max((s.get("pool_bytes", 0) for s in rp["sizes"]), default=0) / 2**20
    verdict = "capturable" if report["summary"]["capturable"] else report["summary"]["verdict"]
    ranks = ", ".join(f"rank {r['environment']['rank']}: {r['replay']['status'] if r.get('replay') else '-'}" for r in report.get("ranks", []))
    print(f"| {name} | {wall:.1f} s | {verdict} | {rp['status']}{' (' + ranks + ')' if ranks else ''} | {peak:.1f} GiB | {pool:.0f} MiB |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default="ratio,full,tp")
    args = ap.parse_args()
    parts = set(args.only.split(","))
    import torch

    print(f"GPU: {torch.cuda.get_device_name()} x{torch.cuda.device_count()}, torch {torch.__version__}\n")
    if "ratio" in parts:
        print("| target | tokens | whole `trace --device cuda` | hand-written compile + split + capture | ratio |")
        print("|---|---|---|---|---|")
        ratio(args.repeat, "examples/nsa_indexer/after.py:make", "1,8,64,512")
        ratio(max(1, args.repeat - 1), "llama3-8b", "1,8,64,512", "bfloat16")
        print()
    print("| target | whole process | verdict | replay | peak GPU memory | graph pool |")
    print("|---|---|---|---|---|---|")
    if "full" in parts:
        for name, extra in (("llama3-8b (1 layer, bf16)", ["--dtype", "bfloat16"]),
                            ("deepseek-v3 --layers 3 (MoE, 256 experts, bf16)", ["--dtype", "bfloat16", "--layers", "3"]),
                            ("glm5 --layers 3 (MoE, 256 experts, bf16)", ["--dtype", "bfloat16", "--layers", "3"])):
            target = name.split()[0]
            size_table(name, *trace(target, "1,8,64,512", *extra, "--timeout", "500"))
    if "tp" in parts:
        for name, target in (("llama3-8b TP=2 (bf16)", "llama3-8b"), ("qwen3-30b-a3b TP=2 (MoE, bf16)", "qwen3-30b-a3b")):
            size_table(name, *trace(target, "1,8,64,512", "--dtype", "bfloat16", "--nproc", "2", "--timeout", "500"))


if __name__ == "__main__":
    main()
