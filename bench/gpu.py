"""GPU part of the benchmark (run on the H100): trace + CUDA-graph replay of the bundled example.

    python bench/gpu.py [--repeat 3]   # prints a Markdown table; docs/performance.md quotes it
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--target", default="examples/nsa_indexer/after.py:make")
    ap.add_argument("--tokens", default="1,8,64,512")
    args = ap.parse_args()
    walls, reports = [], []
    for _ in range(args.repeat):
        out = Path(tempfile.mkdtemp()) / "r.json"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pcg_inspect", "trace", args.target, "--device", "cuda", "--tokens", args.tokens,
                        "--quiet", "--json", str(out)], cwd=ROOT, check=False, env=dict(os.environ))
        walls.append(time.perf_counter() - t0)
        reports.append(json.loads(out.read_text()))
    med = statistics.median
    print(f"GPU: {reports[0]['environment']['device']}, torch {reports[0]['environment']['torch_version']}, "
          f"{args.repeat} runs, median (min–max)\n")
    print(f"whole `trace --device cuda` process: {med(walls):.2f} s ({min(walls):.2f}–{max(walls):.2f}); "
          f"replay stage (child process incl. its re-trace): {med(r['timings_s']['replay_s'] for r in reports):.2f} s; "
          f"trace stage: {med(r['timings_s']['trace_s'] for r in reports):.2f} s\n")
    print("| tokens | warm-up ms | capture ms | tool's checks ms | peak MiB | pieces: eager µs → graph µs |")
    print("|---|---|---|---|---|---|")
    for i, s in enumerate(reports[0]["replay"]["sizes"]):
        rows = [r["replay"]["sizes"][i] for r in reports]
        pieces = ", ".join(
            f"{p['index']}{'s' if p['is_split'] else ''}: {med(r['pieces'][j]['eager_us'] for r in rows):.1f} → "
            f"{med(r['pieces'][j]['graph_us'] for r in rows):.1f}" for j, p in enumerate(s["pieces"])
        )
        print(f"| {s['capture_size']} | {med(r['warmup_ms'] for r in rows):.1f} | {med(r['capture_ms'] for r in rows):.1f} | "
              f"{med(r['check_ms'] for r in rows):.1f} | {s['peak_mem_bytes'] / 2**20:.1f} | {pieces} |")


if __name__ == "__main__":
    main()
