"""Functional adversarial attacks in [0, 1] pixel space."""

from lit_robust.attacks.config import PGDAttack
from lit_robust.attacks.objectives import attack_objective, per_example_loss
from lit_robust.attacks.pgd import check_budget, fgsm, pgd, project, random_init
from lit_robust.attacks.single_step import (
    SingleStepAttack,
    single_step,
    single_step_with_gradient,
)
from lit_robust.attacks.smoothed import smooth_adv_pgd, smoothed_cross_entropy

__all__ = [
    "PGDAttack", "SingleStepAttack", "attack_objective", "check_budget", "fgsm",
    "per_example_loss", "pgd", "project", "random_init", "single_step",
    "single_step_with_gradient", "smooth_adv_pgd", "smoothed_cross_entropy",
]
