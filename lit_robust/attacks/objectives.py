"""Losses that attacks maximize.

``ce`` is cross-entropy against the labels; ``kl`` is the TRADES attack objective
KL(f(x) ‖ f(x')) against the clean prediction (Zhang et al., ICML 2019).
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor

AttackLoss = Literal["ce", "kl"]


def per_example_loss(logits: Tensor, target: Tensor, loss: AttackLoss) -> Tensor:
    """The attack objective per example.

    Args:
        logits: model outputs on the perturbed input, shape (N, K).
        target: labels (N,) for ``ce``; clean probabilities (N, K) for ``kl``.
        loss: ``"ce"`` or ``"kl"``.

    Returns:
        A float32 tensor of shape (N,).
    """
    logits = logits.float()
    if loss == "ce":
        return F.cross_entropy(logits, target, reduction="none")
    if loss == "kl":
        log_p = F.log_softmax(logits, dim=1)
        return (target * (target.clamp_min(1e-12).log() - log_p)).sum(1)
    raise ValueError(f"unknown attack loss {loss!r}; use 'ce' or 'kl'")


def attack_objective(logits: Tensor, target: Tensor, loss: AttackLoss) -> Tensor:
    """Summed objective whose gradient w.r.t. the input drives the attack step."""
    return per_example_loss(logits, target, loss).sum()

