"""mark_dynamic on the token dim, then a branch that specialises it: a ConstraintViolationError."""

import torch, torch.nn as nn
class M(nn.Module):
    def forward(self, x):
        if x.shape[0] == 8:  # MARK:specialised
            return x * 2
        return x + 1
def make(tokens: int = 8):
    x = torch.randn(tokens, 4)
    torch._dynamo.mark_dynamic(x, 0)
    return M(), (x,)
