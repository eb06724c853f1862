"""Which shape expression equals a data-dependent total (repeat_interleave's output_size=)."""

import torch
import torch.nn as nn

from pcg_inspect.analyze.sizes import common_expression, equal_expressions, with_keyword


class _Moe(nn.Module):
    def __init__(self):
        super().__init__()
        self.top_k = 2
        self._private = 3


def test_expressions_equal_to_the_total_simplest_first():
    ids = torch.zeros(8, 2, dtype=torch.long)
    x = torch.zeros(8, 16)
    exprs = equal_expressions(16, {"self": _Moe(), "x": x, "ids": ids, "n": 4, "flag": True})
    assert exprs[0] == "x.shape[1]" and "ids.numel()" in exprs  # equal first
    assert "x.shape[0] * self.top_k" in exprs and "x.shape[0] * 2" in exprs and "ids.shape[0] * 2" in exprs
    assert exprs.index("ids.numel()") < exprs.index("x.shape[0] * self.top_k") < exprs.index("x.shape[0] * 2")
    assert not any("_private" in e or "flag" in e for e in exprs)
    assert equal_expressions(13, {"x": x}) == ()  # a prime total: nothing


def test_an_expression_must_hold_at_every_call_and_two_token_counts():
    at64 = (64, ("ids.numel()", "counts.shape[0] * 16"))
    at8 = (8, ("counts.shape[0] * 2", "ids.numel()"))
    assert common_expression([at64, at8]) == "ids.numel()"
    assert common_expression([at64]) == ""  # one size proves nothing
    assert common_expression([at64, (64, ("ids.numel()",)), at8, (8, ())]) == ""  # one call had another total


def test_keyword_goes_into_the_right_call():
    code = "y = torch.repeat_interleave(torch.arange(E, device=x.device), counts).float()"
    assert with_keyword(code, "repeat_interleave", "output_size=n") == \
        "y = torch.repeat_interleave(torch.arange(E, device=x.device), counts, output_size=n).float()"
    assert with_keyword("a = x.repeat_interleave(r,)", "repeat_interleave", "output_size=n") == "a = x.repeat_interleave(r, output_size=n)"
    assert with_keyword("a = torch.repeat_interleave(", "repeat_interleave", "output_size=n") == ""  # call goes on
    assert with_keyword("a = b", "repeat_interleave", "output_size=n") == ""
