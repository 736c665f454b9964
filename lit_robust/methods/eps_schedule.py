"""ε-scheduling of a method's training attack: a clean start, then a linear ramp to the budget.

Ngnawé et al., "Robust Fine-Tuning from Non-Robust Pretrained Models: Mitigating Suboptimal
Transfer With Epsilon-Scheduling" (arXiv:2509.23325, 2025): adversarial fine-tuning of a
*non-robust* backbone at the full budget from the first step delays the adaptation to the task
("suboptimal transfer"); training with ε = 0 first and then ramping ε linearly up to the target
budget (their hinge schedule) lets the model adapt to the task before robustness is imposed.

Every method with a training attack (:class:`~lit_robust.methods.base.RobustClassifier`'s
``eps_ramp_start_epoch`` and ``eps_ramp_epochs``) scales the attack's ε and step size by
:func:`epsilon_scale` of the training progress, measured in (fractional) epochs; validation and
test attacks keep their budgets.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def check_schedule(start_epoch: float, ramp_epochs: float) -> None:
    """Reject negative schedule lengths.

    Raises:
        ValueError: for ``start_epoch < 0`` or ``ramp_epochs < 0``.
    """
    if start_epoch < 0 or ramp_epochs < 0:
        raise ValueError(
            f"eps_ramp_start_epoch and eps_ramp_epochs must be >= 0 (epochs), got "
            f"{start_epoch} and {ramp_epochs}; 0 and 0 train at the full budget from the start"
        )


def epsilon_scale(epoch: float, start_epoch: float, ramp_epochs: float) -> float:
    """The fraction of the budget used at training progress ``epoch`` (fractional epochs).

    ``0`` before ``start_epoch``; then ``(epoch − start_epoch) / ramp_epochs``, reaching ``1``
    after ``ramp_epochs`` epochs of ramp; ``1`` from ``start_epoch`` on when ``ramp_epochs`` is
    0. For example ``start_epoch=1, ramp_epochs=4`` gives 0, 0, 0.25, 0.5, 0.75, 1, 1, … at the
    starts of epochs 0, 1, 2, ….
    """
    if epoch < start_epoch:
        return 0.0
    if ramp_epochs == 0:
        return 1.0
    return min(1.0, (epoch - start_epoch) / ramp_epochs)


@contextmanager
def scaled_budget(attack: Any, scale: float) -> Iterator[Any]:
    """Run the block with ``attack.eps`` and ``attack.step_size`` multiplied by ``scale``
    (the ratio of step to budget is kept), then restore both."""
    eps, step_size = attack.eps, attack.step_size
    attack.eps, attack.step_size = eps * scale, step_size * scale
    try:
        yield attack
    finally:
        attack.eps, attack.step_size = eps, step_size
