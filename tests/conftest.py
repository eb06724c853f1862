import os
import re
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TARGETS = Path(__file__).resolve().parent / "targets"
EXAMPLES = ROOT / "examples"


@lru_cache(maxsize=None)
def marker_line(path: str, marker: str) -> int:
    """Line number of the '# <marker>' comment in a file (so tests never hard-code lines)."""
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if re.search(rf"#\s*{re.escape(marker)}\b", line):
            return i
    raise AssertionError(f"{marker} not found in {path}")


@lru_cache(maxsize=None)
def traced(spec: str, sizes: tuple = (1, 8), split_ops: tuple = (), dynamic: str = "maybe"):
    """Trace once per (spec, options) for the whole session: tracing costs ~1 s.

    sglang's split-op registry is process-wide (tests/test_sglang.py adds to it), so tests that
    are not about sglang leave it out.
    """
    from pcg_inspect.options import TraceOptions
    from pcg_inspect.pipeline import run as run_trace

    opts = TraceOptions(target=spec, sizes=sizes, split_ops=split_ops, dynamic=dynamic, sglang_split_ops=False)
    return run_trace(opts).report


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:
        has_cuda = False
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip)


os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Say why the sglang checks were skipped, and how to run them."""
    try:
        import sglang.srt.compilation.compilation_config  # noqa: F401
    except Exception:
        terminalreporter.write_line(
            "note: tests/test_sglang.py (our split == sglang's own split_graph) was skipped: sglang is not installed. "
            "Run `bash .ci/run`, or: pip install --no-deps sglang==0.5.23 && pip install orjson pybase64 starlette msgspec "
            "pyzmq ipython aiohttp pydantic pillow \"triton==3.8.0\"")
