"""sglang's own backend is the oracle: per capture size and piece, our capture status is sglang's, and
our pieces are sglang's (GPU only; needs sglang 0.5.23 importable, its compilation modules' few deps).

Each side runs in its own process (a failed capture can leave a sticky CUDA error). sglang stops at
its first failure, as the server would: sizes and pieces after it are compared only where sglang got.
Each comparison prints ``ORACLE|target|size:piece|ours=..|sglang=..`` for the issue notes.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLES, ROOT, TARGETS
from pcg_inspect import run as runner
from pcg_inspect.options import TraceOptions

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(importlib.util.find_spec("sglang") is None, reason="needs sglang 0.5.23")]
ORACLE = Path(__file__).with_name("sglang_oracle.py")

TARGETS_AND_SIZES = [
    (f"{EXAMPLES / 'nsa_indexer' / 'after.py'}:make", (1, 8, 64, 512)),
    (f"{EXAMPLES / 'nsa_indexer' / 'before.py'}:make", (8, 64)),
    (f"{EXAMPLES / 'tp' / 'layer.py'}:make", (1, 8, 64)),
    (f"{TARGETS / 'stack.py'}:make", (8, 64)),
    (f"{TARGETS / 'replay_bad.py'}:make_good", (1, 8)),
    (f"{TARGETS / 'replay_bad.py'}:make_host_sync", (8,)),
    (f"{TARGETS / 'replay_bad.py'}:make_baked", (8,)),
    (f"{TARGETS / 'capture_bad.py'}:make_pageable_copy", (8,)),
    (f"{TARGETS / 'capture_bad.py'}:make_workspace", (8,)),
    (f"{TARGETS / 'capture_bad.py'}:make_side_stream", (8,)),
    (f"{TARGETS / 'engine.py'}:make_item_slice", (8,)),
]


def _sglang(spec, sizes, split_ops):
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.run([sys.executable, str(ORACLE), spec, ",".join(map(str, sizes)), json.dumps(split_ops)],
                          capture_output=True, text=True, env=env, timeout=300)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("ORACLE-JSON ")), None)
    assert line is not None, proc.stderr[-3000:]
    return json.loads(line[len("ORACLE-JSON "):])


@pytest.mark.parametrize("spec, sizes", TARGETS_AND_SIZES, ids=[f"{Path(s.split(':')[0]).stem}:{s.split(':')[1]}" for s, _ in TARGETS_AND_SIZES])
def test_our_capture_status_and_pieces_are_sglangs(spec, sizes):
    ours = runner.trace(TraceOptions(target=spec, sizes=sizes, device="cuda", sglang_split_ops=False,
                                     backends=("tc_piecewise",)))  # sglang's piecewise backend is the oracle here
    theirs = _sglang(spec, sizes, list(ours.split_ops))
    name = spec.rsplit("/", 1)[-1]
    if not theirs["status"] and theirs["error"]:  # sglang died before any capture (a fullgraph=True compile error)
        print(f"ORACLE|{name}|-|ours={ours.summary.verdict}|sglang={theirs['error'][:120]}")
        assert "Unsupported" in theirs["error"] or "TorchRuntimeError" in theirs["error"], theirs["error"]
        assert ours.graph_breaks and not ours.capturable and ours.replay is None
        return
    assert [(p.index, p.is_split) for p in ours.pieces if p.graph == 0] == [tuple(p) for p in theirs["pieces"]]
    statuses = {f"{s.capture_size}:{p.index}": ("capture_failed" if p.status == "capture_failed" else "captured")
                for s in ours.replay.sizes for p in s.pieces if not p.is_split}
    assert theirs["status"], theirs
    for key, (status, error) in sorted(theirs["status"].items()):
        print(f"ORACLE|{name}|{key}|ours={statuses.get(key)}|sglang={status}|{error[:100]}")
        assert statuses.get(key) == status, (key, statuses, theirs)
    if theirs["error"]:
        assert not ours.capturable
