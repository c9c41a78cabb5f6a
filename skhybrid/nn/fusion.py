"""Fusing the CNN and LSTM feature vectors of the hybrid model.

Both inputs are ``(B, d)`` vectors: ``u_c`` (the pooled CNN features projected to ``d``) and
``u_r`` (the LSTM's last hidden state). The paper's fusion is an attention mechanism whose
weights multiply the features element-wise::

    [e_c ; e_r] = W_a [u_c ; u_r] + b_a                      (W_a: 2d x 2d)
    α_c, α_r    = softmax(e_c, e_r)    per feature j, so α_c[j] + α_r[j] = 1
    z           = α_c ⊙ u_c + α_r ⊙ u_r                     (⊙: element-wise product)

For every feature the model learns, from both branches, how much to trust the CNN and how
much the LSTM. ``"concat"`` (``z = [u_c ; u_r]``, size 2d), ``"sum"`` (``u_c + u_r``) and
``"product"`` (``u_c ⊙ u_r``) are the ablations.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FUSIONS", "AttentionFusion", "build_fusion"]

FUSIONS = ("attention", "concat", "sum", "product")


class AttentionFusion(nn.Module):
    """Per-feature softmax attention over the two branches, applied element-wise.

    Parameters
    ----------
    dim : int
        Size ``d`` of both input vectors and of the output.

    Attributes
    ----------
    last_weights : Tensor of shape (B, 2, d) or None
        ``α`` of the last forward pass (``[:, 0]`` CNN, ``[:, 1]`` LSTM), detached, for
        inspecting which branch the model relies on.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.out_features = dim
        self.score = nn.Linear(2 * dim, 2 * dim)
        self.last_weights: torch.Tensor | None = None

    def forward(self, u_c: torch.Tensor, u_r: torch.Tensor) -> torch.Tensor:
        stacked = torch.stack((u_c, u_r), dim=1)  # (B, 2, d)
        scores = self.score(stacked.flatten(1)).view(-1, 2, self.dim)
        alpha = torch.softmax(scores, dim=1)
        self.last_weights = alpha.detach()
        return (alpha * stacked).sum(dim=1)


class _Elementwise(nn.Module):
    def __init__(self, dim: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.out_features = 2 * dim if mode == "concat" else dim

    def forward(self, u_c: torch.Tensor, u_r: torch.Tensor) -> torch.Tensor:
        if self.mode == "concat":
            return torch.cat((u_c, u_r), dim=1)
        if self.mode == "sum":
            return u_c + u_r
        return u_c * u_r


def build_fusion(name: str, dim: int) -> nn.Module:
    """Return the fusion module ``name`` for two ``(B, dim)`` inputs (see :data:`FUSIONS`).

    The module has an ``out_features`` attribute: the size of the fused vector.
    """
    if name == "attention":
        return AttentionFusion(dim)
    if name in FUSIONS:
        return _Elementwise(dim, name)
    raise ValueError(f"Unknown fusion {name!r}; valid fusions are {list(FUSIONS)}.")
