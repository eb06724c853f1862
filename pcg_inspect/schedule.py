"""The engine's capture schedule: the sizes sglang 0.5.23 captures a graph for, per phase.

Learnt from sglang's ``arg_groups/cuda_graph_hook.py`` (``generate_prefill_cuda_graph_batch_sizes``,
``generate_decode_cuda_graph_batch_sizes``); ``tests/test_options.py`` checks these against sglang's own
functions. Prefill sizes are token counts (every backend), decode sizes batch sizes (one token per request, so
a layer sees as many tokens). No torch.
"""

from __future__ import annotations

PREFILL_MAX_BS = 2048
"""sglang's documented prefill default (``cuda_graph_config.prefill.max_bs`` unset)."""
DECODE_MAX_BS = 256
"""A common decode ``--cuda-graph-max-bs``; sglang derives its own from the GPU's memory and TP: pass it."""


def prefill_sizes(max_bs: int = PREFILL_MAX_BS) -> tuple[int, ...]:
    """4-32 step 4, 48-256 step 16, 288-512 step 32, 576-1024 step 64, 1280-4096 step 256, then step 512, each
    <= max_bs (42 sizes up to 2048)."""
    runs = ((4, 32, 4), (48, 256, 16), (288, 512, 32), (576, 1024, 64), (1280, 4096, 256), (4608, max_bs, 512))
    return tuple(s for start, stop, step in runs for s in range(start, stop + 1, step) if s <= max_bs)


def decode_sizes(max_bs: int = DECODE_MAX_BS, speculative: bool = False) -> tuple[int, ...]:
    """1, 2, 4, 8, 12, 16-256 step 8, 272-496 step 16, 512+ step 32 (speculative decoding: denser small sizes),
    each <= max_bs, and max_bs itself."""
    if speculative:
        runs = ((1, 8, 1), (10, 32, 2), (40, 64, 4), (72, 256, 8), (272, max_bs, 16))
        sizes = [s for a, b, st in runs for s in range(a, b + 1, st)]
    else:
        sizes = [1, 2, 4, 8, 12] + list(range(16, 257, 8)) + list(range(272, 512, 16)) + list(range(512, max_bs + 1, 32))
    sizes = [s for s in sizes if s <= max_bs]
    if max_bs not in sizes:
        sizes.append(max_bs)
    return tuple(sizes)


def engine_sizes(phase: str, max_bs: int = 0) -> tuple[int, ...]:
    """The schedule of a phase ('prefill' | 'decode'), up to ``max_bs`` (0: the default of the phase)."""
    if phase == "decode":
        return decode_sizes(max_bs or DECODE_MAX_BS)
    return prefill_sizes(max_bs or PREFILL_MAX_BS)


def default_mem_fraction_static(gpu_bytes: int, tp: int = 1, prefill_sizes_count: int = 42) -> float:
    """sglang 0.5.23's default ``--mem-fraction-static`` (``arg_groups/memory_hook.py``): the share of the GPU for
    weights and the KV cache; the rest is reserved for activations and CUDA graphs. The reserve (MiB) is 512, 1.5
    per chunked-prefill token (at least 2048; the chunk and the decode max batch grow with the GPU's memory), 1024
    per 8 ranks, 2 per decode graph batch, 8 per prefill graph size, and at least 10 GiB on a GPU over 60 GiB."""
    mib = gpu_bytes / 2**20
    if mib < 20 * 1024:
        chunk, decode_bs = 2048, 8
    elif mib < 35 * 1024:
        chunk, decode_bs = 4096, 48 if tp < 4 else 160
    elif mib < 60 * 1024:
        chunk, decode_bs = 4096, 32 if tp < 4 else 160
    elif mib < 160 * 1024:
        chunk, decode_bs = 8192, 256 if tp < 4 else 512
    else:
        chunk, decode_bs = 16384, 512
    reserved = 512 + max(chunk, 2048) * 1.5 + tp / 8 * 1024 + decode_bs * 2 + prefill_sizes_count * 8
    if mib > 60 * 1024:
        reserved = max(reserved, 10 * 1024)
    return round((mib - reserved) / mib, 3)
