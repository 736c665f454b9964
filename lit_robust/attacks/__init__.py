"""Functional adversarial attacks in [0, 1] pixel space."""

from lit_robust.attacks.config import PGDAttack
from lit_robust.attacks.objectives import attack_objective, per_example_loss
from lit_robust.attacks.pgd import check_budget, fgsm, pgd, project, random_init

__all__ = [
    "PGDAttack", "attack_objective", "check_budget", "fgsm", "per_example_loss", "pgd",
    "project", "random_init",
]
