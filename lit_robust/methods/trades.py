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
        attack: the training attack. Default: PGD-10, L∞ 8/255, step 2/255, maximizing
            ``loss="kl"`` from the start x + 0.001·N(0, I) (``start="normal"``), as the paper's
            official code; ``loss: ce`` is what TWINS' code used, and ``start: ball`` starts
            uniformly in the ε-ball instead.
        **kwargs: the arguments of :class:`AdversarialTraining`.
    """

    def __init__(
        self, beta: float = 6.0, attack: PGDAttack | None = None, **kwargs: Any
    ) -> None:  # pragma: no mutate block (save_hyperparameters reads the signature)
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if attack is None:
            attack = PGDAttack(loss="kl", start="normal")
        super().__init__(attack=attack, **kwargs)
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
