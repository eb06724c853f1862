"""The NSA indexer layer of ``before.py``, fixed the way sglang PR 23351 fixed it.

1. the ``data_ptr()`` comparison runs only in eager (``torch.compiler.is_compiling()``);
2. the k-cache store and the top-k selection are custom ops with declared mutations and fake
   impls, so Dynamo records each as one node;
3. the attention path is chosen outside the captured region (a Python flag fixed at build
   time, as sglang forces one path under PCG), and the top-k op is a split op: it runs eagerly
   between two captured pieces, writing into a buffer the first piece allocated, so the second
   piece reads it at a stable address.

``pcg-inspect trace examples/nsa_indexer/after.py:make`` is clean and cuts 3 pieces.
"""

import torch
import torch.nn as nn

HIDDEN, HEADS, HEAD_DIM, TOPK, CACHE_LEN = 64, 4, 16, 16, 1024

# Ops that run eagerly between captured pieces (sglang: @register_split_op()).
SPLIT_OPS = ["nsa::indexer_topk"]


@torch.library.custom_op("nsa::store_k_cache", mutates_args=("k_cache",))
def store_k_cache(k: torch.Tensor, loc: torch.Tensor, k_cache: torch.Tensor) -> None:
    k_cache.index_copy_(0, loc, k)


@store_k_cache.register_fake
def _(k, loc, k_cache):
    return None


# Writes into ``out``, allocated by the captured piece before it: a split op's result must live
# at an address the next captured graph can rely on (vLLM's attention "with output" pattern).
@torch.library.custom_op("nsa::indexer_topk", mutates_args=("out",))
def indexer_topk(scores: torch.Tensor, k: int, out: torch.Tensor) -> None:
    out.copy_(torch.topk(scores, k, dim=-1).indices)


@indexer_topk.register_fake
def _(scores, k, out):
    return None


def apply_rope(src, dst, cos, sin):
    half = src.shape[-1] // 2
    x1, x2 = src[..., :half], src[..., half:]
    rotated = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
    if not torch.compiler.is_compiling() and src.data_ptr() == dst.data_ptr():
        rotated = rotated.clone()  # src is about to be overwritten
    return dst.copy_(rotated)


class Indexer(nn.Module):
    def __init__(self, sparse: bool = True):
        super().__init__()
        self.sparse = sparse  # decided before capture, never from tensor values
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
        store_k_cache(k, positions, self.k_cache)
        scores = torch.einsum("thd,cd->tc", q, self.k_cache) / HEAD_DIM**0.5
        if self.sparse:
            idx = torch.empty(T, TOPK, dtype=torch.int32, device=scores.device)
            indexer_topk(scores, TOPK, idx)
            probs = torch.gather(scores, 1, idx.long()).softmax(-1)
            selected = self.k_cache[idx.long()]
        else:
            probs = scores[:, :TOPK].softmax(-1)
            selected = self.k_cache[:TOPK].expand(T, TOPK, HEAD_DIM)
        mixed = torch.einsum("tk,tkd->td", probs, selected)
        return self.wo((q + mixed.unsqueeze(1)).flatten(1))


def make(tokens: int = 8, device: str = "cpu"):
    """One indexer layer and its inputs for ``tokens`` tokens of prefill."""
    layer = Indexer().to(device)
    hidden = torch.randn(tokens, HIDDEN, device=device)
    positions = torch.arange(tokens, device=device) + 100
    return layer, (hidden, positions)
