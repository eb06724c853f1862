"""`plan`'s accuracy and cost on a GPU (issue #24): the forecast from a sample against the measured whole model on
the whole schedule, and both against the hand-written baseline doing the engine's compile + capture alone.

    python bench/plan_gpu.py MODEL [--nproc N] [--samples 1,2] [--sample-sizes 4] [--out DIR] [--skip forecast,measured,baseline]

Runs, in this order, each as its own process: `plan MODEL --samples 1,2 --sample-sizes 4` (the forecast),
`plan MODEL --samples all --sample-sizes all` (measured: every layer, every size), and `bench/gpu_baseline.py` over
the same schedule and layers (1 GPU only). Prints a Markdown table; the reports are kept in --out.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")


def run(cmd, timeout):
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return time.perf_counter() - t0, None
    return time.perf_counter() - t0, proc


def plan(model, out, name, samples, sizes, extra, timeout):
    path = Path(out) / f"{name}.json"
    wall, proc = run([sys.executable, "-m", "pcg_inspect", "plan", model, "--device", "cuda", "--dtype", "bfloat16",
                      "--backend", "tc_piecewise", "--samples", samples, "--sample-sizes", sizes, "--json", str(path),
                      "--timeout", str(timeout - 10), *extra], timeout)
    if proc is None or not path.exists():
        print(f"<!-- {name}: {'timed out' if proc is None else proc.stderr[-1500:] + proc.stdout[-1500:]} -->")
        return wall, None
    if name == "forecast":
        print(proc.stdout[-4000:])
    return wall, json.loads(path.read_text())["plan"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--nproc", type=int, default=1)
    ap.add_argument("--samples", default="1,2")
    ap.add_argument("--sample-sizes", default="4")
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp"))
    ap.add_argument("--skip", default="")
    ap.add_argument("--timeout", type=int, default=400, help="seconds for each run")
    ap.add_argument("--timeout-measured", type=int, default=0, help="seconds for the measured run (default: --timeout)")
    args = ap.parse_args()
    skip = set(args.skip.split(","))
    extra = ["--nproc", str(args.nproc)] if args.nproc > 1 else []
    rows = {}
    if "forecast" not in skip:
        rows["forecast"] = plan(args.model, args.out, "forecast", args.samples, args.sample_sizes, extra, args.timeout)
    if "measured" not in skip:
        rows["measured"] = plan(args.model, args.out, "measured", "all", "all", extra,
                                args.timeout_measured or args.timeout)
    base = None
    if "baseline" not in skip and args.nproc == 1 and rows.get("measured", (0, None))[1]:
        p = rows["measured"][1]
        wall, proc = run([sys.executable, "bench/gpu_baseline.py", args.model, ",".join(map(str, p["schedule"])),
                          "bfloat16", "0", str(p["layers_total"])], args.timeout)
        if proc is not None and proc.returncode == 0:
            vals = dict(re.findall(r"^(\w+) ([\d.]+)$", proc.stdout, re.M))
            base = (wall, float(vals["capture_s"]), int(vals["pool_bytes"]), int(vals["peak_bytes"]))
        else:
            print(f"<!-- baseline failed: {'timed out' if proc is None else proc.stderr[-1500:]} -->")
    print(f"\n{args.model}, bf16, TP={args.nproc}\n")
    print("| run | whole process | compile s | compile-pass fwd s | capture s | graph pool | peak | graphs |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (wall, p) in rows.items():
        if p is None:
            print(f"| {name} | {wall:.1f} s | failed | | | | | |")
            continue
        measured = [c for s in p["samples"][-1:] for c in s["captures"]]
        tc = next((g for g in p["graphs"] if g["backend"] == "tc_piecewise"), {"total": 0})
        how = (f"forecast from {','.join(str(s['layers']) for s in p['samples'])} layers x {len(p['sampled_sizes'])} sizes"
               if name == "forecast" else f"measured: {p['layers_total']} layers x {len(measured)} sizes")
        print(f"| {how} | {wall:.1f} s | {p['forecast_compile_s']:.1f} | {p['forecast_warmup_s']:.2f} | "
              f"{p['forecast_capture_s']:.2f} | {p['forecast_pool_bytes'] / 2**30:.3f} GiB | "
              f"{p['forecast_peak_bytes'] / 2**30:.2f} GiB | {tc['total']} |")
    if base:
        print(f"| hand-written baseline (engine's compile + capture only) | {base[0]:.1f} s | | | {base[1]:.2f} | "
              f"{base[2] / 2**30:.3f} GiB | {base[3] / 2**30:.2f} GiB | |")
    f, m = rows.get("forecast", (0, None))[1], rows.get("measured", (0, None))[1]
    if f and m:
        def err(key):
            return (f[key] - m[key]) / m[key] * 100 if m[key] else float("nan")

        print(f"\nforecast vs measured: graph pool {err('forecast_pool_bytes'):+.1f} %, capture {err('forecast_capture_s'):+.1f} %, "
              f"compile-pass forwards {err('forecast_warmup_s'):+.1f} %, compile {err('forecast_compile_s'):+.1f} %, "
              f"peak {err('forecast_peak_bytes'):+.1f} %")
        print(f"memory fit (forecast): {f['memory_fit']}")
    if m and base:
        print(f"measured plan / baseline wall: {rows['measured'][0] / base[0]:.2f}x; forecast plan / baseline: "
              f"{rows['forecast'][0] / base[0]:.2f}x" if f else "")


if __name__ == "__main__":
    main()
