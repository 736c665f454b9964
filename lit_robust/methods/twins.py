"""TWINS fine-tuning (Liu et al., "TWINS: A Fine-Tuning Framework for Improved Transferability
of Adversarial Robustness and Generalization", CVPR 2023)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from lit_robust.attacks import PGDAttack
from lit_robust.losses import trades_kl
from lit_robust.methods.base import RobustClassifier
from lit_robust.methods.optim import ScheduleName
from lit_robust.models.dual_bn import (
    WINGS,
    Wing,
    convert_to_dual_bn,
    dual_batchnorms,
    use_wing,
)
from lit_robust.models.modes import eval_mode
from lit_robust.models.normalize import NormalizedClassifier

TwinsVariant = Literal["at", "trades"]


class TWINS(RobustClassifier):
    """Two-wing normalization fine-tuning of a (robust) pre-trained network.

    Every BatchNorm of the pre-trained model becomes two wings sharing the convolutions and the
    head (:mod:`lit_robust.models.dual_bn`): the *frozen* wing normalizes with the pre-training
    population statistics and never updates them, the *adaptive* wing is an ordinary BatchNorm
    initialized from the checkpoint. Each wing trains its own affine γ, β.

    A training step:

    1. PGD examples ``x'`` for the whole batch, with the model in eval mode and routed through
       the adaptive wing (running statistics).
    2. The first ⌈n/2⌉ examples (the "frozen half" F) go through the frozen wing, the other
       ⌊n/2⌋ (the "adaptive half" A) through the adaptive wing, in train mode. Odd batches give
       the extra example to the frozen wing, whose eval-mode normalization works with any
       count (the reference code gives it to the adaptive half); a batch of one trains only
       the frozen wing.
    3. The loss, with every term a mean over its half:

       - ``variant="at"``:  ``λ·CE(f_F(x'_F), y_F) + CE(f_A(x'_A), y_A)``
       - ``variant="trades"``:
         ``λ·[CE(f_F(x_F), y_F) + β·KL_F] + [CE(f_A(x_A), y_A) + β·KL_A]``, where
         ``KL_w = KL(f_w(x_w) ‖ f_w(x'_w))`` is :func:`~lit_robust.losses.trades_kl` on the
         half's clean and adversarial logits: the clean halves replace the adversarial
         cross-entropy, and the robustness term is ``β·(λ·KL_F + KL_A)``. The reference code
         divides each half's summed KL by the whole batch size, which halves its effective
         β; here each KL is the mean over its own half, as in TRADES.

    Validation, test and deployment use the adaptive wing;
    :func:`~lit_robust.models.dual_bn.export_adaptive` turns ``self.model`` into a plain network.
    Checkpoints hold both wings.

    Beyond the paper, once every ``n = log_grad_ratio_every_n_steps`` steps the method logs
    each wing's "effective learning rate" (the paper's argument for why TWINS escapes the
    pre-trained initialization faster): ``train/grad_ratio/conv_<wing>`` is ‖∇_W L_wing‖ / ‖W‖
    over all convolution weights W (shared by the wings, so the gradient of each wing's
    weighted loss term is taken separately), and ``train/grad_ratio/bn_weight_<wing>`` is the
    same ratio for that wing's BatchNorm γ. This costs two extra backward passes on those steps
    only. They are the last step of every ``n`` (steps ``n-1, 2n-1, ...``), which Lightning
    writes to the loggers when ``n`` is a multiple of ``trainer.log_every_n_steps``.

    Args:
        variant: ``"at"`` (TWINS-AT) or ``"trades"`` (TWINS-TRADES).
        lam: λ, the weight of the frozen wing's loss (1.0 for CIFAR, 0.4 for high-resolution
            data in the paper).
        beta: β of the TRADES variant (6 in the paper); unused by ``"at"``.
        attack: the training attack (default PGD-10, L∞ 8/255, step 2/255, random start, with
            the cross-entropy objective for both variants, as the reference code; set
            ``loss: kl`` for the TRADES paper's attack).
        log_grad_ratio_every_n_steps: log the per-wing gradient/weight ratios every this many
            optimizer steps; 0 disables them.
        lr: SGD learning rate (0.003 in the paper).
        momentum: SGD momentum (0.9).
        weight_decay: weight decay (1e-5 for CIFAR, 1e-3 for high-resolution data).
        schedule: learning-rate schedule (multistep, decayed ×0.1).
        milestones: decay epochs (30 and 50 of the paper's 60 epochs).
        **kwargs: the other arguments of :class:`~lit_robust.methods.base.RobustClassifier`.
    """

    keeps_source_layers = True

    def __init__(
        self,
        variant: TwinsVariant = "at",
        lam: float = 1.0,
        beta: float = 6.0,
        attack: PGDAttack | None = None,
        log_grad_ratio_every_n_steps: int = 50,
        lr: float = 0.003,
        momentum: float = 0.9,
        weight_decay: float = 1e-5,
        schedule: ScheduleName = "multistep",
        milestones: Sequence[float] | None = (30, 50),
        **kwargs: Any,
    ) -> None:
        if variant not in ("at", "trades"):
            raise ValueError(f"variant must be 'at' or 'trades', got {variant!r}")
        if lam < 0 or beta < 0:
            raise ValueError(f"lam and beta must be >= 0, got lam={lam} and beta={beta}")
        if log_grad_ratio_every_n_steps < 0:
            raise ValueError(
                f"log_grad_ratio_every_n_steps must be >= 0 (0 disables), got "
                f"{log_grad_ratio_every_n_steps}"
            )
        super().__init__(
            lr=lr, momentum=momentum, weight_decay=weight_decay, schedule=schedule,
            milestones=milestones, **kwargs,
        )
        self.variant = variant
        self.lam = lam
        self.beta = beta
        self.attack = attack if attack is not None else PGDAttack()
        self.log_grad_ratio_every_n_steps = log_grad_ratio_every_n_steps
        if self.val_attack is None:
            self.val_attack = PGDAttack(
                eps=self.attack.eps, step_size=self.attack.step_size, steps=self.attack.steps,
                norm=self.attack.norm, loss="ce",
            )

    def transform_model(self, model: NormalizedClassifier) -> nn.Module:
        """Turn every BatchNorm into frozen and adaptive wings (after the weights are loaded).

        Without ``pretrained`` (and no checkpoint being restored) it warns: the frozen wing
        then holds a fresh BatchNorm's statistics (mean 0, variance 1), not a pre-training's.
        """
        restoring = self._trainer is not None and self._trainer.ckpt_path is not None
        if self.hparams.pretrained is None and not restoring:
            rank_zero_warn(
                "TWINS without model.pretrained: the frozen wing keeps the default BatchNorm "
                "statistics (mean 0, variance 1) instead of a pre-trained model's, so TWINS "
                "degenerates; set model.pretrained to the checkpoint you fine-tune",
                category=UserWarning,
            )
        return convert_to_dual_bn(model)

    def make_adversarial(self, x: Tensor, y: Tensor) -> Tensor:
        """PGD for the whole batch in eval mode through the adaptive wing."""
        with eval_mode(self.model), use_wing(self.model, "adaptive"):
            return self.attack(self.model, x, y)

    def wing_losses(
        self, x: Tensor, x_adv: Tensor, y: Tensor
    ) -> tuple[dict[Wing, Tensor], Tensor]:
        """Each wing's weighted loss term and the adversarial logits of the whole batch.

        Returns:
            ``({"frozen": λ·L_F, "adaptive": L_A}, logits)``; a wing whose half is empty (a
            batch of one) has no entry. ``logits`` are in batch order.
        """
        n_frozen = (x.shape[0] + 1) // 2
        halves: dict[Wing, slice] = {
            "frozen": slice(0, n_frozen), "adaptive": slice(n_frozen, x.shape[0]),
        }
        weights: dict[Wing, float] = {"frozen": self.lam, "adaptive": 1.0}
        terms: dict[Wing, Tensor] = {}
        logits: list[Tensor] = []
        for wing, half in halves.items():
            if half.stop <= half.start:
                continue
            with use_wing(self.model, wing):
                if self.variant == "at":
                    logits_adv = self.model(x_adv[half])
                    loss = F.cross_entropy(logits_adv, y[half])
                else:
                    logits_clean = self.model(x[half])
                    logits_adv = self.model(x_adv[half])
                    loss = F.cross_entropy(logits_clean, y[half]) + self.beta * trades_kl(
                        logits_clean, logits_adv
                    )
            terms[wing] = weights[wing] * loss
            logits.append(logits_adv)
        return terms, torch.cat(logits)

    def training_loss(self, x: Tensor, x_adv: Tensor | None, y: Tensor) -> tuple[Tensor, Tensor]:
        if x_adv is None:
            raise ValueError("TWINS trains on adversarial examples; make_adversarial returned None")
        terms, logits = self.wing_losses(x, x_adv, y)
        for wing, term in terms.items():
            self.log(f"train/loss_{wing}", term.detach(), on_step=False, on_epoch=True)
        every = self.log_grad_ratio_every_n_steps
        if every > 0 and self._trainer is not None and (self.global_step + 1) % every == 0:
            self.log_grad_ratios(terms)
        return torch.stack(list(terms.values())).sum() + self._idle_wing_zero(terms), logits

    def _idle_wing_zero(self, terms: dict[Wing, Tensor]) -> Tensor | float:
        """Under DDP, a zero that depends on the trainable parameters of a wing that had no
        example in this batch (a batch of one gives none to the adaptive wing).

        DDP needs a gradient for every trainable parameter in every step, or it stops at the
        next one; the processes get equally large batches, so they all add it. Those
        parameters then get a zero gradient (weight decay and momentum still move them, as
        they move the others). One process adds nothing: their gradient stays ``None``.
        """
        if self._trainer is None or self.trainer.world_size < 2:
            return 0.0
        idle = [wing for wing in WINGS if wing not in terms]
        params = [p for layer in dual_batchnorms(self.model) for wing in idle
                  for p in getattr(layer, wing).parameters() if p.requires_grad]
        return sum((0.0 * p.sum() for p in params), torch.zeros((), device=self.device))

    def log_grad_ratios(self, terms: dict[Wing, Tensor]) -> None:
        """Log ‖∇L_wing‖/‖W‖ of the conv weights and of each wing's BN γ (see the class doc)."""
        convs = [
            m.weight for m in self.model.modules()
            if isinstance(m, nn.Conv2d) and m.weight.requires_grad
        ]
        layers = dual_batchnorms(self.model)
        for wing, term in terms.items():
            if not term.requires_grad:
                continue
            wing_layers = [getattr(layer, wing) for layer in layers]
            gammas = [
                bn.weight for bn in wing_layers if bn.weight is not None and bn.weight.requires_grad
            ]
            if not convs + gammas:
                continue
            grads = torch.autograd.grad(term, convs + gammas, retain_graph=True, allow_unused=True)
            for name, params, grad in (
                ("conv", convs, grads[: len(convs)]), ("bn_weight", gammas, grads[len(convs):])
            ):
                if params:
                    self.log(
                        f"train/grad_ratio/{name}_{wing}", _norm_ratio(grad, params),
                        on_step=True, on_epoch=False,
                    )


def _norm_ratio(grads: Sequence[Tensor | None], params: Sequence[Tensor]) -> Tensor:
    """‖grads‖₂ / ‖params‖₂ over all tensors together (a missing gradient counts as zero)."""
    grad_sq = sum(g.detach().float().pow(2).sum() for g in grads if g is not None)
    param_sq = sum(p.detach().float().pow(2).sum() for p in params)
    return torch.as_tensor(grad_sq).sqrt() / torch.as_tensor(param_sq).sqrt().clamp_min(1e-12)
