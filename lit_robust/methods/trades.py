"""TRADES (Zhang et al., "Theoretically Principled Trade-off between Robustness and
Accuracy", ICML 2019)."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor

from lit_robust.attacks import PGDAttack
from lit_robust.losses import trades_kl
from lit_robust.methods.adversarial import AdversarialTraining


class TRADES(AdversarialTraining):
    """TRADES: CE(f(x), y) + β·KL(f(x) ‖ f(x')), with x' maximizing the KL term.

    Args:
        beta: weight of the robustness term (6 in the paper).
        attack: the training attack; its ``loss`` is ``kl`` by default (the paper) and may be
            set to ``ce`` (as TWINS' code does).
        **kwargs: the arguments of :class:`AdversarialTraining`.
    """

    def __init__(self, beta: float = 6.0, attack: PGDAttack | None = None, **kwargs: Any) -> None:
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        super().__init__(attack=attack if attack is not None else PGDAttack(loss="kl"), **kwargs)
        if kwargs.get("val_attack") is None:
            self.val_attack = PGDAttack(
                eps=self.attack.eps, step_size=self.attack.step_size, steps=self.attack.steps,
                norm=self.attack.norm, loss="ce",
            )
        self.beta = beta

    def training_loss(self, x: Tensor, x_adv: Tensor | None, y: Tensor) -> tuple[Tensor, Tensor]:
        logits_clean = self.model(x)
        logits_adv = self.model(x_adv)
        loss = F.cross_entropy(logits_clean, y) + self.beta * trades_kl(logits_clean, logits_adv)
        return loss, logits_adv
