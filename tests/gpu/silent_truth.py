"""Ground truth for the silent-output classes: the target's forward under a plain ``torch.cuda.graph`` capture.

Warm-up twice on a side stream, capture once, then replay twice and run eager twice on the same static inputs.
Returns what happened: whether capture raised (and the message), whether two replays agree with each other, and
whether two eager calls agree (an op reading host state: replays agree, eager does not).
"""

from __future__ import annotations

import sys


def plain_capture(spec: str, tokens: int = 16) -> dict:
    import torch

    from pcg_inspect.load import load

    target = load(spec, (tokens,), "cuda", None)
    call = target.calls[0]
    module, args, kwargs = target.module, call.args, call.kwargs
    out: dict = {"capture_error": "", "replays_agree": None, "eager_agrees": None, "replay_equals_eager": None}
    side = torch.cuda.Stream()
    with torch.no_grad():
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                module(*args, **kwargs)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                static = module(*args, **kwargs)
        except Exception as exc:
            out["capture_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            return out
        graph.replay()
        first = static.clone()
        graph.replay()
        second = static.clone()
        e1, e2 = module(*args, **kwargs), module(*args, **kwargs)
        torch.cuda.synchronize()
        out["replays_agree"] = bool(torch.equal(first, second))
        out["eager_agrees"] = bool(torch.allclose(e1, e2, equal_nan=True))
        out["replay_equals_eager"] = bool(torch.allclose(second, e2, equal_nan=True))
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(plain_capture(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 16)))
