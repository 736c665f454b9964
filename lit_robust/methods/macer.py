"""MACER (Zhai et al., "MACER: Attack-free and Scalable Robust Training via Maximizing
Certified Radius", ICLR 2020)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lit_robust.losses import macer_terms
from lit_robust.methods.smoothing_training import GaussianAugmentation


class MACER(GaussianAugmentation):
    """Certified-radius maximization of the Gaussian-smoothed classifier, attack-free.

    Each image gets k noisy copies ``x + N(0, σ²I)``; the loss is the smoothed classifier's
    cross-entropy plus λ times a hinge on the soft certified radius of the correctly
    classified images (:func:`~lit_robust.losses.macer_terms`, Algorithm 1 of the paper in the
    form of the official ``macer.py``). Defaults are the paper's CIFAR-10 settings (§4.1 and the
    official ``main.py``): k = 16, β = 16, γ = 8, λ = 12 at σ = 0.25 and 0.5; SGD lr 0.01,
    momentum 0.9, weight decay 5e-4, batch 64, 440 epochs with ×0.1 at 200 and 400
    (``configs/experiments/certified/cifar10_macer.yaml``). Their CIFAR-10 result at
    σ = 0.25: certified accuracy 71 % / 59 % at r = 0.25 / 0.5, ACR 0.556 (Cohen et al.:
    60 % / 43 %, ACR 0.416).

    Args:
        sigma: noise standard deviation σ in [0, 1] pixel units.
        num_noise_samples: k, noisy copies per image (16 in the paper).
        beta: β, the inverse temperature of the robustness term's softmax.
        hinge: γ, the hinge: only images with ``Φ⁻¹(p₁) − Φ⁻¹(p₂) ≤ γ`` contribute (named
            ``hinge`` because ``gamma`` is the learning-rate decay factor of every method).
        radius_weight: λ, the robustness term's weight.
        **kwargs: the arguments of
            :class:`~lit_robust.methods.smoothing_training.GaussianAugmentation` and
            :class:`~lit_robust.methods.base.RobustClassifier`.

    Raises:
        ValueError: for ``beta <= 0``, ``hinge <= 0``, ``radius_weight < 0`` and the Gaussian
            augmentation's bad settings (σ, k < 1).
    """

    def __init__(
        self,
        sigma: float = 0.25,
        num_noise_samples: int = 16,
        beta: float = 16.0,
        hinge: float = 8.0,
        radius_weight: float = 12.0,
        **kwargs: Any,
    ) -> None:  # pragma: no mutate block (save_hyperparameters reads the signature)
        if beta <= 0 or hinge <= 0 or radius_weight < 0:
            raise ValueError(
                f"MACER needs beta > 0, hinge > 0 and radius_weight >= 0; got beta={beta}, "
                f"hinge={hinge}, radius_weight={radius_weight}"
            )
        super().__init__(sigma=sigma, num_noise_samples=num_noise_samples, **kwargs)

    def training_loss(self, x: Tensor, x_adv: Tensor | None, y: Tensor) -> tuple[Tensor, Tensor]:
        hp = self.hparams
        logits = self.noisy_logits(x)
        classification, robustness = macer_terms(logits, y, hp.sigma, hp.beta, hp.hinge)
        self.log("train/macer_robustness", robustness.detach(), on_step=False, on_epoch=True)
        smoothed = torch.softmax(logits.float(), dim=2).mean(dim=0)
        return classification + hp.radius_weight * robustness, smoothed.log()
