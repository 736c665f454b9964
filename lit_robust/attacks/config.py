"""Attack settings as small configurable objects for YAML and method arguments.

The attack itself stays a pure function (:func:`lit_robust.attacks.pgd.pgd`); a
:class:`PGDAttack` only holds its hyperparameters so that LightningCLI can check and document
them (``class_path: lit_robust.attacks.PGDAttack``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lit_robust.attacks.objectives import AttackLoss
from lit_robust.attacks.pgd import Norm, check_budget, pgd


class PGDAttack:
    """PGD hyperparameters; calling the object runs :func:`pgd`.

    Args:
        eps: radius in [0, 1] pixel units (L∞ 8/255 or L2 0.5).
        step_size: step in pixel units; ``None`` uses 2.5·ε/steps.
        steps: gradient steps.
        norm: ``"linf"`` or ``"l2"``.
        loss: ``"ce"`` or ``"kl"`` (TRADES objective).
        random_start: start from a random point of the ε-ball.
        restarts: independent runs, worst case per example kept.
    """

    def __init__(
        self,
        eps: float = 8 / 255,
        step_size: float | None = 2 / 255,
        steps: int = 10,
        norm: Norm = "linf",
        loss: AttackLoss = "ce",
        random_start: bool = True,
        restarts: int = 1,
    ) -> None:
        check_budget(eps, step_size, norm)
        if steps < 0 or restarts < 1:
            raise ValueError(f"need steps >= 0 and restarts >= 1, got {steps} and {restarts}")
        self.eps = eps
        self.step_size = step_size
        self.steps = steps
        self.norm = norm
        self.loss = loss
        self.random_start = random_start
        self.restarts = restarts

    @property
    def name(self) -> str:
        """A short, unique-enough label such as ``pgd10x3_linf_eps0.0314``."""
        restarts = f"x{self.restarts}" if self.restarts > 1 else ""
        return f"pgd{self.steps}{restarts}_{self.norm}_eps{self.eps:.4g}"

    def __call__(
        self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None = None
    ) -> Tensor:
        return pgd(
            model, x, y, eps=self.eps, step_size=self.step_size, steps=self.steps,
            norm=self.norm, loss=self.loss, random_start=self.random_start,
            restarts=self.restarts, target=target,
        )

    def __repr__(self) -> str:
        return (
            f"PGDAttack(eps={self.eps:.6g}, step_size={self.step_size}, steps={self.steps}, "
            f"norm={self.norm!r}, loss={self.loss!r}, restarts={self.restarts})"
        )


# Checkpoints record a method's attack among its hyperparameters; allow it in weights-only loads.
torch.serialization.add_safe_globals([PGDAttack])
