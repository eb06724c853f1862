"""Benchmark: what `pcg-inspect trace` costs against bare Dynamo, and how it grows with the model.

    python bench/run.py [--repeat 3] [--out docs/performance.md]

Every measurement is a whole process (what a user waits for), repeated; the table gives the
median and the spread (min-max). Set OMP_NUM_THREADS=1 on small machines (done here).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ROOT / "bench" / "targets.py"
SIZES = "1,8,64"
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")


def run(cmd: list[str]) -> tuple[float, int, int]:
    """(wall seconds, peak RSS in MiB, exit code) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({code}): {proc.stderr.read().decode()[-500:]}")
    return wall, usage.ru_maxrss // 1024, code


def measure(cmd: list[str], repeat: int) -> dict:
    walls, rss = [], []
    for _ in range(repeat):
        w, r, _ = run(cmd)
        walls.append(w)
        rss.append(r)
    return {"median_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls), "rss_mib": max(rss)}


def fmt(m: dict) -> str:
    return f"{m['median_s']:.2f} s ({m['min_s']:.2f}–{m['max_s']:.2f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "docs" / "performance.md"))
    ap.add_argument("--layers", default="1,8,32")
    args = ap.parse_args()
    py = sys.executable
    results: dict = {"layers": {}}

    results["import_cli"] = measure([py, "-c", "import pcg_inspect.cli"], args.repeat)
    results["help"] = measure([py, "-m", "pcg_inspect", "--help"], args.repeat)
    results["import_torch"] = measure([py, "-c", "import torch"], args.repeat)

    tmp = Path(tempfile.mkdtemp(prefix="pcg-bench-"))
    results["llama"] = {}
    for n in [int(x) for x in args.layers.split(",")]:
        t = f"{TARGETS}:llama_{n}"
        row = {
            "trace": measure([py, "-m", "pcg_inspect", "trace", t, "--tokens", SIZES, "--no-replay", "--quiet"], args.repeat),
            "compile": measure([py, "bench/bare.py", str(TARGETS), f"llama_{n}", "compile", SIZES], args.repeat),
        }
        results["llama"][n] = row
        print(f"{n:>3} llama layers: trace {fmt(row['trace'])}, compile {fmt(row['compile'])}", flush=True)
    for n in [int(x) for x in args.layers.split(",")]:
        t = f"{TARGETS}:make_{n}"
        row = {
            "trace": measure([py, "-m", "pcg_inspect", "trace", t, "--tokens", SIZES, "--no-replay", "--quiet"], args.repeat),
            "trace_replay": measure([py, "-m", "pcg_inspect", "trace", t, "--tokens", SIZES, "--quiet"], args.repeat),
            "compile": measure([py, "bench/bare.py", str(TARGETS), f"make_{n}", "compile", SIZES], args.repeat),
            "explain": measure([py, "bench/bare.py", str(TARGETS), f"make_{n}", "explain", SIZES], args.repeat),
        }
        report = tmp / f"r{n}.json"
        run([py, "-m", "pcg_inspect", "trace", t, "--tokens", SIZES, "--no-replay", "--quiet", "--json", str(report)])
        row["stages"] = json.loads(report.read_text())["timings_s"]
        row["render"] = render_times(report, args.repeat)
        results["layers"][n] = row
        print(f"{n:>3} layers: trace {fmt(row['trace'])}, compile {fmt(row['compile'])}, explain {fmt(row['explain'])}", flush=True)

    big = max(results["layers"])
    rep = tmp / f"r{big}.json"
    results["diff_process"] = measure([py, "-m", "pcg_inspect", "diff", str(rep), str(rep)], args.repeat)
    sys.path.insert(0, str(ROOT))
    from pcg_inspect.diff import diff
    from pcg_inspect.report import load_report

    ra = load_report(str(rep))
    t0 = time.perf_counter()
    for _ in range(10):
        diff(ra, ra)
    results["diff_inproc_s"] = (time.perf_counter() - t0) / 10
    t0 = time.perf_counter()
    load_report(str(rep))
    results["load_report_s"] = time.perf_counter() - t0
    write_markdown(results, Path(args.out), args.repeat)
    (ROOT / "bench" / "last_run.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")


def render_times(report_path: Path, repeat: int) -> dict:
    """Seconds to draw the node-level and piece-level pictures (DOT text + `dot -Tsvg`) of a report."""
    sys.path.insert(0, str(ROOT))
    from pcg_inspect.render.graph import to_dot, to_svg
    from pcg_inspect.report import load_report

    report = load_report(str(report_path))
    out = {}
    for detail in ("nodes", "pieces"):
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            svg = to_svg(to_dot(report, detail), timeout_s=120)
            times.append(time.perf_counter() - t0)
        out[detail] = {"median_s": statistics.median(times), "svg": svg is not None}
    out["num_nodes"] = sum(g["num_nodes"] for g in json.loads(report_path.read_text())["graphs"])
    return out


def write_markdown(r: dict, out: Path, repeat: int) -> None:
    import torch

    lines = [
        "# Performance",
        "",
        f"Measured by `python bench/run.py` on {datetime.date.today().isoformat()}: {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}, OMP_NUM_THREADS=1. "
        f"Whole processes, {repeat} runs each: median (min–max). Capture sizes {SIZES}.",
        "",
        "## trace vs bare Dynamo (toy decoder stacks, `bench/targets.py`)",
        "",
        "| layers | `trace --no-replay` | `trace` (CPU replay) | bare `torch.compile(backend=\"eager\")` | `torch._dynamo.explain` | trace / compile | trace / explain | peak RSS trace / compile |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = r["layers"]
    for n, row in rows.items():
        ratio_c = row["trace"]["median_s"] / row["compile"]["median_s"]
        ratio_e = row["trace"]["median_s"] / row["explain"]["median_s"]
        lines.append(
            f"| {n} | {fmt(row['trace'])} | {fmt(row['trace_replay'])} | {fmt(row['compile'])} | {fmt(row['explain'])} | "
            f"{ratio_c:.2f}x | {ratio_e:.2f}x | {row['trace']['rss_mib']} / {row['compile']['rss_mib']} MiB |"
        )
    ns = sorted(rows)
    if len(ns) >= 2:
        a, b = ns[0], ns[-1]
        slope_t = (rows[b]["trace"]["median_s"] - rows[a]["trace"]["median_s"]) / (b - a)
        slope_c = (rows[b]["compile"]["median_s"] - rows[a]["compile"]["median_s"]) / (b - a)
        lines += ["", f"Per-layer slope ({a}→{b} layers): trace {slope_t * 1000:.0f} ms/layer, bare compile {slope_c * 1000:.0f} ms/layer."]
    if r.get("llama"):
        lines += ["", "## Shrunk real transformers layers (Llama, hidden 256, `bench/targets.py:llama_N`)", "",
                  "| layers | `trace --no-replay` | bare `torch.compile(backend=\"eager\")` | trace / compile | peak RSS trace / compile |",
                  "|---|---|---|---|---|"]
        for n, row in r["llama"].items():
            lines.append(f"| {n} | {fmt(row['trace'])} | {fmt(row['compile'])} | {row['trace']['median_s'] / row['compile']['median_s']:.2f}x | "
                         f"{row['trace']['rss_mib']} / {row['compile']['rss_mib']} MiB |")
        ls = sorted(r["llama"])
        if len(ls) >= 2:
            a, b = ls[0], ls[-1]
            st = (r["llama"][b]["trace"]["median_s"] - r["llama"][a]["trace"]["median_s"]) / (b - a)
            sc = (r["llama"][b]["compile"]["median_s"] - r["llama"][a]["compile"]["median_s"]) / (b - a)
            lines.append(f"\nPer-layer slope ({a}→{b}): trace {st * 1000:.0f} ms/layer, bare compile {sc * 1000:.0f} ms/layer.")
    lines += ["", "Stage times inside `trace` (s, from the report's `timings_s`):", "", "| layers | " + " | ".join(rows[ns[0]]["stages"]) + " |",
              "|---|" + "---|" * len(rows[ns[0]]["stages"])]
    for n in ns:
        lines.append(f"| {n} | " + " | ".join(f"{v:.3f}" for v in rows[n]["stages"].values()) + " |")
    lines += ["", "## Pictures (`render.graph`: DOT text + Graphviz `dot -Tsvg`)", "",
              "| layers | nodes | node-level picture | piece-level picture | `--detail auto` picks |", "|---|---|---|---|---|"]
    for n in ns:
        rd = rows[n]["render"]
        auto = "nodes" if rd["num_nodes"] <= 400 else "pieces"
        lines.append(f"| {n} | {rd['num_nodes']} | {rd['nodes']['median_s']:.2f} s | {rd['pieces']['median_s']:.3f} s | {auto} |")
    lines += [
        "",
        "## Start-up and diff",
        "",
        "| what | time |",
        "|---|---|",
        f"| `import pcg_inspect.cli` (process) | {fmt(r['import_cli'])} |",
        f"| `pcg-inspect --help` (process) | {fmt(r['help'])} |",
        f"| `import torch` alone (process, for scale) | {fmt(r['import_torch'])} |",
        f"| `pcg-inspect diff` of two {max(rows)}-layer reports (process) | {fmt(r['diff_process'])} |",
        f"| `diff()` of two {max(rows)}-layer reports (in process) | {r['diff_inproc_s'] * 1000:.1f} ms |",
        f"| loading a {max(rows)}-layer report | {r['load_report_s'] * 1000:.1f} ms |",
        "",
    ]
    kept = ""
    if out.exists():  # keep the GPU section (measured on the device machine by bench/gpu.py)
        old = out.read_text()
        if "## GPU" in old:
            kept = "\n" + old[old.index("## GPU"):]
    out.write_text("\n".join(lines) + "\n" + kept)


if __name__ == "__main__":
    main()
