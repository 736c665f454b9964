"""SmoothAdv (Salman et al., "Provably Robust Deep Learning via Adversarially Trained Smoothed
Classifiers", NeurIPS 2019)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_robust.attacks.smoothed import smooth_adv_pgd
from lit_robust.methods.smoothing_training import GaussianAugmentation
from lit_robust.models.modes import eval_mode


class SmoothAdv(GaussianAugmentation):
    """Adversarial training of the smoothed classifier: train on noisy SmoothAdv examples.

    Each step draws m noise samples ``ηᵢ ~ N(0, σ²I)`` per image, finds ``x'`` by L2 PGD on the
    soft smoothed classifier with those draws fixed
    (:func:`~lit_robust.attacks.smoothed.smooth_adv_pgd`, in eval mode, §3 of the paper), and
    minimizes the cross-entropy of the
    base classifier on ``x' + ηᵢ``: on all m copies (``train_on_all_copies``, their
    ``--train-multi-noise``, used for the released CIFAR-10 models) or on the first only.
    ε grows linearly over the first ``eps_warmup_epochs`` epochs (their ``--warmup``).
    Certification is Cohen et al.'s, unchanged; the paper's CIFAR-10 certified accuracy
    73 % / 58 % at r = 0.25 / 0.5 (the best over their settings per radius) against Cohen et
    al.'s 61 % / 43 %.

    The official code splits each loader batch of 256 into m chunks and takes one optimizer
    step per chunk, on the chunk's m noisy copies; a loader batch of 256/m images does the
    same here (``configs/experiments/certified/cifar10_smoothadv.yaml``: m = 2, batch 128).

    Args:
        sigma: noise standard deviation σ in [0, 1] pixel units.
        num_noise_samples: m (``m_train``), noise draws per image in the attack and, with
            ``train_on_all_copies``, in training.
        eps: the attack's L2 radius in pixel units (the official code's ``--epsilon 64`` is
            64/256 = 0.25).
        attack_steps: T, PGD steps (step 2ε/T, start at x).
        eps_warmup_epochs: epochs over which ε grows linearly to its value, epoch e using
            ε·min(1, (e + 1)/w); 0 disables the warm-up.
        train_on_all_copies: train on all m noisy adversarial copies; ``False`` trains on one
            noisy copy per image (the first draw of the attack).
        **kwargs: the arguments of
            :class:`~lit_robust.methods.smoothing_training.GaussianAugmentation` (validation
            certification) and of
            :class:`~lit_robust.methods.base.RobustClassifier`.

    Raises:
        ValueError: for ``eps < 0``, ``attack_steps < 1``, ``eps_warmup_epochs < 0`` and the
            Gaussian augmentation's bad settings (σ, m < 1).
    """

    def __init__(
        self,
        sigma: float = 0.25,
        num_noise_samples: int = 2,
        eps: float = 0.25,
        attack_steps: int = 10,
        eps_warmup_epochs: int = 10,
        train_on_all_copies: bool = True,
        **kwargs: Any,
    ) -> None:  # pragma: no mutate block (save_hyperparameters reads the signature)
        if eps < 0 or attack_steps < 1 or eps_warmup_epochs < 0:
            raise ValueError(
                f"need eps >= 0 (L2, pixel units), attack_steps >= 1 and eps_warmup_epochs >= 0;"
                f" got eps={eps}, attack_steps={attack_steps}, "
                f"eps_warmup_epochs={eps_warmup_epochs}"
            )
        super().__init__(sigma=sigma, num_noise_samples=num_noise_samples, **kwargs)

    def attack_eps(self) -> float:
        """The attack radius of the current epoch (the linear warm-up)."""
        hp = self.hparams
        if hp.eps_warmup_epochs == 0:
            return hp.eps
        return hp.eps * min(1.0, (self.current_epoch + 1) / hp.eps_warmup_epochs)

    def make_adversarial(self, x: Tensor, y: Tensor) -> Tensor:
        """The noisy adversarial copies to train on, copy-major: (c·N, C, H, W), c = m or 1."""
        hp = self.hparams
        noise = hp.sigma * torch.randn((hp.num_noise_samples, *x.shape), device=x.device,
                                       dtype=x.dtype)
        with eval_mode(self.model):
            x_adv = smooth_adv_pgd(self.model, x, y, noise, self.attack_eps(), hp.attack_steps)
        copies = x_adv.unsqueeze(0) + (noise if hp.train_on_all_copies else noise[:1])
        return copies.flatten(0, 1)

    def training_loss(self, x: Tensor, x_adv: Tensor | None, y: Tensor) -> tuple[Tensor, Tensor]:
        copies = x_adv.shape[0] // x.shape[0]
        logits = self.model(x_adv)
        loss = F.cross_entropy(logits.float(), y.repeat(copies))
        return loss, logits[: x.shape[0]]
