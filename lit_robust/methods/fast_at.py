"""Fast (single-step) adversarial training: FGSM, FGSM-RS and N-FGSM.

Each step trains on one-step adversarial examples (:mod:`lit_robust.attacks.single_step`), at
the cost of two forward/backward passes instead of PGD-K's K + 1. The attack runs with the
model in train mode by default, as in the three official codes (Wong et al.'s
``train_fgsm.py``, de Jorge et al.'s ``train.py``, Andriushchenko and Flammarion's
``train.py``), so its forward pass also updates the BatchNorm running statistics.

Single-step training can *catastrophically overfit*: within an epoch or two PGD accuracy falls
to about zero while FGSM accuracy rises (Wong et al., §5). Plain FGSM (zero start) is the most
prone, FGSM-RS at larger ε or longer schedules; N-FGSM and GradAlign are designed to avoid it.
:class:`~lit_robust.callbacks.CatastrophicOverfittingGuard` detects it on held-out images and
restores the last good weights with any method.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor

from lit_robust.attacks import PGDAttack
from lit_robust.attacks.single_step import SingleStepAttack
from lit_robust.methods.base import RobustClassifier
from lit_robust.models.modes import mode


class SingleStepAdversarialTraining(RobustClassifier):
    """Cross-entropy on single-step L∞ adversarial examples; plain FGSM training by default.

    The perturbation is ``δ = P(η + α·sign(∇_η CE(f(x + η), y)))`` with
    ``η ~ U(−k·ε, k·ε)`` (clamped to the image box) and ``P`` the projection onto the L∞ ball
    of radius ``clip``·ε (none when ``clip`` is null). Defaults: FGSM (Goodfellow et al.,
    ICLR 2015) in the form of Wong et al.'s zero-initialization baseline: k = 0, α = ε,
    projected; it catastrophically overfits readily, which makes it the reference case for the
    guard. :class:`FGSMRS` and :class:`NFGSM` set the papers' values.

    Args:
        eps: the L∞ training budget ε in [0, 1] pixel units (8/255 on CIFAR-10).
        alpha: the step size α in pixel units; ``None`` uses ε.
        noise_scale: k, the half-width of the uniform start in multiples of ε; 0 starts at x.
        clip: the projection radius in multiples of ε; ``None`` does not project.
        attack_in_eval_mode: generate the attack with BatchNorm in eval mode; ``False``
            (default) attacks in train mode as the official codes do.
        **kwargs: the arguments of :class:`~lit_robust.methods.base.RobustClassifier`. A
            ``val_attack`` left unset is PGD-10 at ε (step 2.5·ε/10, random start).

    Raises:
        ValueError: for ``alpha <= 0``, ``noise_scale < 0``, ``clip <= 0`` or an ε not in
            [0, 1] pixel units.
    """

    def __init__(
        self,
        eps: float = 8 / 255,
        alpha: float | None = None,
        noise_scale: float = 0.0,
        clip: float | None = 1.0,
        attack_in_eval_mode: bool = False,
        **kwargs: Any,
    ) -> None:  # pragma: no mutate block (save_hyperparameters reads the signature)
        attack = SingleStepAttack(eps, alpha, noise_scale, clip)
        super().__init__(**kwargs)
        self.attack = attack
        if self.val_attack is None:
            self.val_attack = PGDAttack(eps=eps, steps=10)
        self.eps = eps
        self.attack_in_eval_mode = attack_in_eval_mode

    def make_adversarial(self, x: Tensor, y: Tensor) -> Tensor:
        return self.single_step_attack(x, y)[0]

    def single_step_attack(self, x: Tensor, y: Tensor,
                           create_graph: bool = False) -> tuple[Tensor, Tensor]:
        """``(x_adv, gradient at the start point)`` of this method's single-step attack."""
        with mode(self.model, training=not self.attack_in_eval_mode):
            return self.attack.with_gradient(self.model, x, y, create_graph)

    def training_loss(self, x: Tensor, x_adv: Tensor | None, y: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.model(x_adv)
        return F.cross_entropy(logits, y), logits


class FGSMRS(SingleStepAdversarialTraining):
    """FGSM with random start (Wong, Rice and Kolter, "Fast is better than free: Revisiting
    adversarial training", ICLR 2020, §4 and Algorithm 3).

    ``η ~ U(−ε, ε)``, one step of α = 1.25·ε, projected onto the ε-ball. Their CIFAR-10
    PreAct ResNet-18 result: 86.06 % clean / 46.06 % PGD-50×10 accuracy at ε = 8/255 after 15
    epochs of a cyclic learning rate (0 → 0.2 → 0) with mixed precision
    (``configs/experiments/fast_at/cifar10_fgsm_rs.yaml``). They recommend early stopping on
    PGD accuracy against catastrophic overfitting (§5), which
    :class:`~lit_robust.callbacks.CatastrophicOverfittingGuard` provides.

    Args:
        eps: the L∞ budget ε in pixel units.
        alpha: the step size; ``None`` uses 1.25·ε (the paper's 10/255 at ε = 8/255).
        noise_scale: half-width of the uniform start in multiples of ε (1 in the paper).
        clip: projection radius in multiples of ε (1 in the paper).
        attack_in_eval_mode: see :class:`SingleStepAdversarialTraining`.
        **kwargs: the arguments of :class:`~lit_robust.methods.base.RobustClassifier`.
    """

    def __init__(
        self,
        eps: float = 8 / 255,
        alpha: float | None = None,
        noise_scale: float = 1.0,
        clip: float | None = 1.0,
        attack_in_eval_mode: bool = False,
        **kwargs: Any,
    ) -> None:  # pragma: no mutate block (save_hyperparameters reads the signature)
        super().__init__(eps=eps, alpha=1.25 * eps if alpha is None else alpha,
                         noise_scale=noise_scale, clip=clip,
                         attack_in_eval_mode=attack_in_eval_mode, **kwargs)


class NFGSM(SingleStepAdversarialTraining):
    """N-FGSM (de Jorge et al., "Make Some Noise: Reliable and Efficient Single-Step
    Adversarial Training", NeurIPS 2022, §4).

    Stronger noise ``η ~ U(−k·ε, k·ε)`` with k = 2, one step of α = ε, and **no projection**
    onto the ε-ball: training perturbations reach up to (k + 1)·ε = 3ε in L∞. Same cost as
    FGSM-RS; avoids catastrophic overfitting up to ε = 16/255 on CIFAR-10 without GradAlign's
    extra cost (their §5). The official code's settings: PreAct ResNet-18, 30 epochs, cyclic
    learning rate 0 → 0.2 → 0, SGD momentum 0.9, weight decay 5e-4, batch 128
    (``configs/experiments/fast_at/cifar10_n_fgsm.yaml``).

    Args:
        eps: the L∞ budget ε in pixel units (the test budget).
        alpha: the step size; ``None`` uses ε.
        noise_scale: k (2 in the paper; their code's ``--unif``).
        clip: project onto the (clip·ε)-ball; ``None`` (the paper) does not.
        attack_in_eval_mode: see :class:`SingleStepAdversarialTraining`.
        **kwargs: the arguments of :class:`~lit_robust.methods.base.RobustClassifier`.
    """

    def __init__(
        self,
        eps: float = 8 / 255,
        alpha: float | None = None,
        noise_scale: float = 2.0,
        clip: float | None = None,
        attack_in_eval_mode: bool = False,
        **kwargs: Any,
    ) -> None:  # pragma: no mutate block (save_hyperparameters reads the signature)
        super().__init__(eps=eps, alpha=alpha, noise_scale=noise_scale, clip=clip,
                         attack_in_eval_mode=attack_in_eval_mode, **kwargs)
