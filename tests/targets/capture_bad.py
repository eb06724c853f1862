"""Layers whose CUDA-graph capture fails, each for one cause the engines hit (sglang, vLLM issues).

``# MARK:<name>`` is the line a capture_failed finding must name. Every layer is
[0] captured linear, [1] split attention (writes into a buffer piece 0 allocated), [2] captured
piece with the problem; on a CPU they all run (there is no capture to fail).
"""

import torch
import torch.nn as nn

SPLIT_OPS = ["pcg_capture::attention"]
_WORKSPACES: dict[int, torch.Tensor] = {}


@torch.library.custom_op("pcg_capture::attention", mutates_args=("out",))
def attention(x: torch.Tensor, out: torch.Tensor) -> None:
    out.copy_(x.softmax(-1))


@attention.register_fake
def _(x, out):
    return None


def init_workspace(device: torch.device) -> None:
    """What a kernel library does at load time: a workspace for the stream that is current then."""
    if device.type == "cuda":
        _WORKSPACES[torch.cuda.current_stream(device).cuda_stream] = torch.zeros(1024, device=device)


@torch.library.custom_op("pcg_capture::ws_scale", mutates_args=())
def ws_scale(x: torch.Tensor) -> torch.Tensor:
    if not x.is_cuda:
        return x * 2
    ws = _WORKSPACES.get(torch.cuda.current_stream(x.device).cuda_stream)
    if ws is None:  # vLLM 55452: the workspace exists only for the stream it was set up on
        raise RuntimeError("workspace not initialized for the current CUDA stream")
    return x * 2 + ws[0]


@ws_scale.register_fake
def _(x):
    return torch.empty_like(x)


@torch.library.custom_op("pcg_capture::side_stream_scale", mutates_args=())
def side_stream_scale(x: torch.Tensor) -> torch.Tensor:
    if not x.is_cuda:
        return x * 2
    side = torch.cuda.Stream(x.device)
    side.wait_stream(torch.cuda.current_stream(x.device))  # forked from the capture stream...
    with torch.cuda.stream(side):
        out = x * 2
    return out  # ...and never joined back: capture fails only when it ends


@side_stream_scale.register_fake
def _(x):
    return torch.empty_like(x)


class Layer(nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.lin = nn.Linear(16, 16)
        self.out = nn.Linear(16, 16)

    def forward(self, x):
        h = self.lin(x)
        y = torch.empty_like(h)
        attention(h, y)
        return self.out(getattr(self, "tail_" + self.kind)(y + 1))

    def tail_pageable_copy(self, y):
        scale = torch.tensor([0.5, 2.0], device=y.device)  # MARK:pageable_copy
        return y * scale[0]

    def tail_workspace(self, y):
        return ws_scale(y)  # MARK:workspace

    def tail_side_stream(self, y):
        return side_stream_scale(y) + 1  # MARK:side_stream


def _factory(kind):
    def make(tokens: int = 8, device: str = "cpu"):
        torch.manual_seed(0)
        init_workspace(torch.device(device))
        return Layer(kind).to(device), (torch.randn(tokens, 16, device=device),)

    return make


make_pageable_copy = _factory("pageable_copy")
make_workspace = _factory("workspace")
make_side_stream = _factory("side_stream")
