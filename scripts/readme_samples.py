"""Regenerate the README's sample outputs from the current code (``--check``: fail when they drifted).

A sample is a fenced block right after a marker line:

    <!-- sample: trace examples/nsa_indexer/before.py:make --quiet ; lines=1-30 ; match=REGEX -->

The command (``pcg-inspect`` arguments) is run from the repository root as a user would run it off a
terminal (no colour, lines unwrapped); ``lines`` keeps a range of its stdout, ``match`` the lines a
regular expression finds. The block becomes ``$ pcg-inspect ARGS`` and those lines.

    python3 scripts/readme_samples.py          # rewrite README.md
    python3 scripts/readme_samples.py --check  # exit 1 and show the drift (tests/test_readme.py runs this)
"""

from __future__ import annotations

import difflib
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^<!-- sample: (?P<spec>.+?) -->\n```(?P<lang>\w*)\n(?P<body>.*?)^```\n", re.M | re.S)


def run(spec: str) -> str:
    """The block's text for one marker spec."""
    parts = [p.strip() for p in spec.split(" ; ")]
    args, opts = parts[0], dict(p.split("=", 1) for p in parts[1:])
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="120", NO_COLOR="1")
    res = subprocess.run([sys.executable, "-m", "pcg_inspect", *args.split()], capture_output=True, text=True, cwd=ROOT,
                         env=env, timeout=300)
    lines = res.stdout.splitlines()
    if "lines" in opts:
        lo, _, hi = opts["lines"].partition("-")
        lines = lines[int(lo) - 1:int(hi or lo)]
    if "match" in opts:
        lines = [ln for ln in lines if re.search(opts["match"], ln)]
    return "\n".join([f"$ pcg-inspect {args}", *lines]) + "\n"


def regenerate(text: str) -> str:
    def block(m: re.Match[str]) -> str:
        return f"<!-- sample: {m['spec']} -->\n```{m['lang']}\n{run(m['spec'])}```\n"

    return MARKER.sub(block, text)


def main() -> int:
    path = ROOT / "README.md"
    old = path.read_text(encoding="utf-8")
    new = regenerate(old)
    if "--check" in sys.argv:
        if new != old:
            sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True), "README.md", "regenerated"))
            print("\nREADME samples drifted: run python3 scripts/readme_samples.py")
            return 1
        return 0
    path.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
