"""Optimizers and learning-rate schedules shared by every method.

Schedules are defined in epochs and applied per optimization step, so fractional epochs and
warm-up work with any dataset size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import torch

OptimizerName = Literal["sgd", "adamw", "adam"]
ScheduleName = Literal["constant", "multistep", "cosine"]


def build_optimizer(
    params: Iterable[Any],
    name: OptimizerName,
    lr: float,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
) -> torch.optim.Optimizer:
    """Build the optimizer over parameters or parameter groups.

    Args:
        params: parameters or ``param_groups`` dicts (groups may override ``lr`` etc.).
        name: ``"sgd"``, ``"adamw"`` or ``"adam"``.
        lr: base learning rate.
        momentum: SGD momentum (ignored by Adam variants).
        nesterov: Nesterov momentum for SGD.
        weight_decay: L2 penalty (decoupled for AdamW).
    """
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0,
            weight_decay=weight_decay,
        )
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; use 'sgd', 'adamw' or 'adam'")


def schedule_factor(
    schedule: ScheduleName,
    max_epochs: float,
    milestones: Sequence[float] | None,
    gamma: float,
    warmup_epochs: float,
) -> Callable[[float], float]:
    """Return ``epoch -> lr multiplier`` for the given schedule.

    Args:
        schedule: ``"constant"``, ``"multistep"`` (×``gamma`` at each milestone epoch) or
            ``"cosine"`` (to 0 at ``max_epochs``).
        max_epochs: training length in epochs (cosine horizon; default milestones).
        milestones: epochs of the multistep decays; ``None`` uses 50% and 75% of training.
        gamma: multistep decay factor.
        warmup_epochs: linear warm-up from 0 over this many epochs.
    """
    if schedule not in ("constant", "multistep", "cosine"):
        raise ValueError(f"unknown schedule {schedule!r}; use constant, multistep or cosine")
    if milestones is None:
        milestones = [0.5 * max_epochs, 0.75 * max_epochs]
    if list(milestones) != sorted(milestones):
        raise ValueError(f"milestones must be increasing, got {list(milestones)}")

    def factor(epoch: float) -> float:
        if warmup_epochs > 0 and epoch < warmup_epochs:
            return (epoch + 1e-8) / warmup_epochs
        if schedule == "multistep":
            return gamma ** sum(epoch >= m for m in milestones)
        if schedule == "cosine":
            progress = min(max(epoch / max(max_epochs, 1e-8), 0.0), 1.0)
            return 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0

    return factor
