"""Adversarial training (Madry et al., "Towards Deep Learning Models Resistant to
Adversarial Attacks", ICLR 2018)."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor

from lit_robust.attacks import PGDAttack
from lit_robust.methods.base import RobustClassifier
from lit_robust.models.modes import mode


class AdversarialTraining(RobustClassifier):
    """PGD adversarial training: cross-entropy on PGD examples (L∞ or L2).

    Args:
        attack: the training attack (default PGD-10, L∞ 8/255, step 2/255, random start).
        attack_in_eval_mode: generate the attack with BatchNorm in eval mode (running
            statistics, as TRADES' and TWINS' code do); ``False`` attacks in train mode as
            Madry's code does, which also updates the BN statistics with attack passes.
        **kwargs: the arguments of :class:`~lit_robust.methods.base.RobustClassifier`.
    """

    def __init__(
        self,
        attack: PGDAttack | None = None,
        attack_in_eval_mode: bool = True,
        **kwargs: Any,
    ) -> None:  # pragma: no mutate block (save_hyperparameters reads the signature)
        super().__init__(**kwargs)
        self.attack = attack if attack is not None else PGDAttack()
        if self.val_attack is None:
            self.val_attack = self.attack
        self.attack_in_eval_mode = attack_in_eval_mode

    def make_adversarial(self, x: Tensor, y: Tensor) -> Tensor:
        with mode(self.model, training=not self.attack_in_eval_mode):
            return self.attack(self.model, x, y)

    def training_loss(self, x: Tensor, x_adv: Tensor | None, y: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.model(x_adv)
        return F.cross_entropy(logits, y), logits
