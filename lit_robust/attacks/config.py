"""Attack settings as small configurable objects for YAML and method arguments.

The attack itself stays a pure function (:func:`lit_robust.attacks.pgd.pgd`); a
:class:`PGDAttack` only holds its hyperparameters so that LightningCLI can check and document
them (``class_path: lit_robust.attacks.PGDAttack``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lit_robust.attacks.objectives import AttackLoss
from lit_robust.attacks.pgd import Norm, Start, check_budget, check_start, default_step_size, pgd


def check_moves(eps: float, step_size: float | None, steps: int) -> None:
    """Reject a non-zero budget that the attack can never use: robust accuracy would then
    be clean accuracy (or accuracy under random noise), an inflated number.

    Raises:
        ValueError: for ``eps > 0`` with ``steps = 0`` or with ``step_size = 0``.
    """
    if eps > 0 and steps == 0:
        raise ValueError(
            f"steps=0 with eps={eps:.6g} takes no attack step: robust accuracy would be clean "
            "accuracy (or accuracy under the random start's noise); use steps >= 1, or eps: 0 "
            "to measure clean accuracy"
        )
    if eps > 0 and step_size == 0:
        raise ValueError(
            f"step_size=0 with eps={eps:.6g} never moves the input: robust accuracy would be "
            "clean accuracy; leave step_size unset (2.5·eps/steps) or give a step > 0"
        )


class PGDAttack:
    """PGD hyperparameters; calling the object runs :func:`pgd`.

    Args:
        eps: radius in [0, 1] pixel units (L∞ 8/255 or L2 0.5).
        step_size: step in pixel units; ``None`` (default) uses 2.5·ε/steps, resolved here
            (2/255 for L∞ 8/255 with 10 steps, 0.125 for L2 0.5 with 10 steps).
        steps: gradient steps.
        norm: ``"linf"`` or ``"l2"``.
        loss: ``"ce"`` or ``"kl"`` (TRADES objective).
        random_start: start from a random point (see ``start``); ``False`` starts at ``x``.
        restarts: independent runs, worst case per example kept.
        start: the random start: ``"ball"`` (default; uniform in the ε-ball's volume),
            ``"sphere"`` (L2 only; uniform on the ε-sphere, as the robustness library) or
            ``"normal"`` (x + 0.001·N(0, I), as the official TRADES code).
        seed: the seed of the per-image random starts of a call with ``indices`` (the
            evaluators make such calls): image i's starts depend only on ``seed``, its dataset
            index and the restart, not on its batch, shard or process.

    Raises:
        ValueError: for budgets not in pixel units, ``steps < 0``, ``restarts < 1`` or a
            start that does not exist for the norm.
    """

    # attacks pickled in checkpoints of earlier versions have no start or seed
    start: Start = "ball"
    seed: int = 0

    def __init__(
        self,
        eps: float = 8 / 255,
        step_size: float | None = None,
        steps: int = 10,
        norm: Norm = "linf",
        loss: AttackLoss = "ce",
        random_start: bool = True,
        restarts: int = 1,
        start: Start = "ball",
        seed: int = 0,
    ) -> None:
        check_budget(eps, step_size, norm)
        check_start(start, norm)
        if steps < 0 or restarts < 1:
            raise ValueError(f"need steps >= 0 and restarts >= 1, got {steps} and {restarts}")
        check_moves(eps, step_size, steps)
        self.eps = eps
        self.step_size = default_step_size(eps, steps) if step_size is None else step_size
        self.steps = steps
        self.norm = norm
        self.loss = loss
        self.random_start = random_start
        self.restarts = restarts
        self.start = start
        self.seed = seed

    @property
    def name(self) -> str:
        """A short label such as ``pgd10x3_linf_eps0.03137``: steps, restarts (when more than
        one), norm and ε; a step size other than the default 2.5·ε/steps is added, as in
        ``pgd10_linf_eps0.03137_step0.003922``."""
        restarts = f"x{self.restarts}" if self.restarts > 1 else ""
        label = f"pgd{self.steps}{restarts}_{self.norm}_eps{self.eps:.4g}"
        if not math.isclose(self.step_size, default_step_size(self.eps, self.steps),
                            rel_tol=1e-5, abs_tol=1e-12):
            label += f"_step{self.step_size:.4g}"
        return label

    def __call__(
        self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None = None,
        indices: Tensor | None = None,
    ) -> Tensor:
        """Attack ``x``; with ``indices`` (the images' dataset indices) each image's random
        starts come from ``(seed, index, restart)`` (see :func:`~lit_robust.attacks.pgd.pgd`)."""
        return pgd(
            model, x, y, eps=self.eps, step_size=self.step_size, steps=self.steps,
            norm=self.norm, loss=self.loss, random_start=self.random_start,
            restarts=self.restarts, target=target, start=self.start, indices=indices,
            seed=self.seed,
        )

    def __repr__(self) -> str:
        return (
            f"PGDAttack(eps={self.eps:.6g}, step_size={self.step_size}, steps={self.steps}, "
            f"norm={self.norm!r}, loss={self.loss!r}, restarts={self.restarts}, "
            f"start={self.start!r}, seed={self.seed})"
        )


# Checkpoints record a method's attack among its hyperparameters; allow it in weights-only loads.
torch.serialization.add_safe_globals([PGDAttack])
