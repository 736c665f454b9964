"""CARTL's source side: adversarial training with feature distance minimization (FDM)."""

from __future__ import annotations

from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor, nn

from lit_robust.attacks import PGDAttack
from lit_robust.losses import fdm_distance
from lit_robust.methods.adversarial import AdversarialTraining
from lit_robust.models.blocks import block_count, check_k, forward_from, forward_until
from lit_robust.models.normalize import NormalizedClassifier


class CARTLSource(AdversarialTraining):
    """PGD adversarial training plus feature distance minimization (Chen et al., "CARTL:
    Cooperative Adversarially-Robust Transfer Learning", ICML 2021).

    With ``L`` blocks (:mod:`lit_robust.models.blocks`) and ``r`` the input of block
    ``L − k + 1`` — the features the last ``k`` blocks will be fine-tuned on after transfer —
    the loss is

        CE(f(x'), y) + λ · fdm_distance(r(x'), r(x))

    with :func:`~lit_robust.losses.fdm_distance` = (1/√d)·Σ_batch ‖r(x') − r(x)‖₂ (``sum``,
    the paper) or its batch mean (``mean``), ``d`` the size of ``r`` per example. The clean
    and adversarial passes both run in train mode; the whole network trains.

    Args:
        k: the number of blocks that will be fine-tuned on the target (checked against the
            backbone's block count when the model is built).
        lam: λ (0.005 in the paper's Tables 3–4 and the official scripts,
            ``cartl_wrn34_cifar100_<k>_0.005``).
        reduction: ``sum`` or ``mean`` of the per-example distances over the batch.
        attack: the training attack (default PGD-7, L∞ 8/255, step 2/255, random start).
        lr: SGD learning rate (0.1).
        weight_decay: weight decay (5e-4).
        **kwargs: the other arguments of
            :class:`~lit_robust.methods.adversarial.AdversarialTraining`.
    """

    def __init__(
        self,
        k: int = 4,
        lam: float = 0.005,
        reduction: Literal["sum", "mean"] = "sum",
        attack: PGDAttack | None = None,
        lr: float = 0.1,
        weight_decay: float = 5e-4,
        **kwargs: Any,
    ) -> None:  # pragma: no mutate block (save_hyperparameters reads the signature)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive number of blocks, got {k!r}")
        if lam < 0:
            raise ValueError(f"lam must be >= 0, got {lam}")
        if reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
        default_attack = PGDAttack(eps=8 / 255, step_size=2 / 255, steps=7)
        super().__init__(attack=attack if attack is not None else default_attack, lr=lr,
                         weight_decay=weight_decay, **kwargs)
        self.k = k
        self.lam = lam
        self.reduction = reduction

    def transform_model(self, model: NormalizedClassifier) -> nn.Module:
        """Check that ``k`` fits the backbone before training starts; the model is unchanged."""
        check_k(model, self.k)
        return model

    @property
    def feature_block(self) -> int:
        """Index (0-based) of the block whose input the FDM term compares: ``L − k``."""
        return block_count(self.model) - self.k

    def training_loss(self, x: Tensor, x_adv: Tensor | None, y: Tensor) -> tuple[Tensor, Tensor]:
        if x_adv is None:
            raise ValueError("CARTLSource trains on adversarial examples; make_adversarial "
                             "returned None")
        index = self.feature_block
        features_adv = forward_until(self.model, x_adv, index)
        logits = forward_from(self.model, features_adv, index)
        features_clean = forward_until(self.model, x, index)
        distance = fdm_distance(features_adv, features_clean, self.reduction)
        self.log("train/fdm_distance", distance.detach(), on_step=False, on_epoch=True)
        return F.cross_entropy(logits, y) + self.lam * distance, logits
