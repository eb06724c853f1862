"""A DSA/NSA-style indexer layer as it stood before piecewise CUDA graph support.

Modelled on what sglang PR 23351 had to fix before GLM-5 / DeepSeek-V3.2 could run under
``--enforce-piecewise-cuda-graph``:

1. the rope helper compares ``data_ptr()`` of two tensors to detect in-place use;
2. the k-cache store and the top-k selection are extension ops registered with a real kernel
   but no fake/meta kernel (as a TORCH_LIBRARY C++ extension without a Meta impl is);
3. the attention path (dense for short contexts, sparse top-k otherwise) is chosen from tensor
   values at run time.

``pcg-inspect trace examples/nsa_indexer/before.py:make`` reports each of them at its line;
``after.py`` is the same layer fixed the way sglang fixed it.
"""

import torch
import torch.nn as nn

HIDDEN, HEADS, HEAD_DIM, TOPK, CACHE_LEN = 64, 4, 16, 16, 1024

# An extension library as C++ registers it: real kernels, no Meta / fake kernel.
_ext = torch.library.Library("nsa_ext", "DEF")
_ext.define("store_k_cache(Tensor k, Tensor loc, Tensor(a!) k_cache) -> ()")
_ext.define("topk_indices(Tensor scores, int k) -> Tensor")


# The kernels stand in for compiled C++/CUDA code: opaque to Dynamo, like the real ones.
@torch.compiler.disable
def _store_k_cache(k, loc, k_cache):
    k_cache.index_copy_(0, loc, k)


@torch.compiler.disable
def _topk_indices(scores, k):
    return torch.topk(scores, k, dim=-1).indices.to(torch.int32)


for _key in ("CPU", "CUDA"):
    _ext.impl("store_k_cache", _store_k_cache, _key)
    _ext.impl("topk_indices", _topk_indices, _key)


def apply_rope(src, dst, cos, sin):
    half = src.shape[-1] // 2
    x1, x2 = src[..., :half], src[..., half:]
    rotated = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
    if src.data_ptr() == dst.data_ptr():
        rotated = rotated.clone()  # src is about to be overwritten
    return dst.copy_(rotated)


class Indexer(nn.Module):
    def __init__(self):
        super().__init__()
        self.wq = nn.Linear(HIDDEN, HEADS * HEAD_DIM, bias=False)
        self.wk = nn.Linear(HIDDEN, HEAD_DIM, bias=False)
        self.wo = nn.Linear(HEADS * HEAD_DIM, HIDDEN, bias=False)
        inv_freq = 1.0 / (10000 ** (torch.arange(0, HEAD_DIM, 2).float() / HEAD_DIM))
        freqs = torch.outer(torch.arange(CACHE_LEN).float(), inv_freq)
        self.register_buffer("cos_cache", freqs.cos(), persistent=False)
        self.register_buffer("sin_cache", freqs.sin(), persistent=False)
        self.register_buffer("k_cache", torch.zeros(CACHE_LEN, HEAD_DIM), persistent=False)

    def forward(self, hidden, positions):
        T = hidden.shape[0]
        q = self.wq(hidden).view(T, HEADS, HEAD_DIM)
        k = self.wk(hidden)
        cos, sin = self.cos_cache[positions], self.sin_cache[positions]
        q = apply_rope(q, q, cos.unsqueeze(1), sin.unsqueeze(1))
        k = apply_rope(k, torch.empty_like(k), cos, sin)
        torch.ops.nsa_ext.store_k_cache(k, positions, self.k_cache)
        scores = torch.einsum("thd,cd->tc", q, self.k_cache) / HEAD_DIM**0.5
        if positions.max() < TOPK:
            probs = scores[:, :TOPK].softmax(-1)
            selected = self.k_cache[:TOPK].expand(T, TOPK, HEAD_DIM)
        else:
            idx = torch.ops.nsa_ext.topk_indices(scores, TOPK)
            probs = torch.gather(scores, 1, idx.long()).softmax(-1)
            selected = self.k_cache[idx.long()]
        mixed = torch.einsum("tk,tkd->td", probs, selected)
        return self.wo((q + mixed.unsqueeze(1)).flatten(1))


def make(tokens: int = 8, device: str = "cpu"):
    """One indexer layer and its inputs for ``tokens`` tokens of prefill."""
    layer = Indexer().to(device)
    hidden = torch.randn(tokens, HIDDEN, device=device)
    positions = torch.arange(tokens, device=device) + 100
    return layer, (hidden, positions)
