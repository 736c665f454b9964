"""Optimizers and learning-rate schedules shared by every method.

Schedules are defined in epochs and applied per optimization step, so fractional epochs and
warm-up work with any dataset size.

References:
    LARS: You, Gitman and Ginsburg, "Large Batch Training of Convolutional Networks",
    arXiv:1708.03888, 2017; in the form SimCLR (Chen et al., ICML 2020) trains with.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import torch

OptimizerName = Literal["sgd", "lars", "adamw", "adam"]
ScheduleName = Literal["constant", "multistep", "cosine", "linear"]


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
        name: ``"sgd"``, ``"lars"`` (:class:`LARS`, SGD with layer-wise trust ratios for
            large batches), ``"adamw"`` or ``"adam"``.
        lr: base learning rate.
        momentum: SGD / LARS momentum (ignored by Adam variants).
        nesterov: Nesterov momentum for SGD / LARS.
        weight_decay: L2 penalty (decoupled for AdamW; LARS skips biases and norm layers).
    """
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0,
            weight_decay=weight_decay,
        )
    if name == "lars":
        return LARS(params, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0,
                    weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; use 'sgd', 'lars', 'adamw' or 'adam'")


class LARS(torch.optim.Optimizer):
    """Layer-wise adaptive rate scaling (You et al., 2017) as SimCLR uses it.

    For every parameter tensor ``w`` with gradient ``g`` (one tensor is one "layer"):

    - ``u = g + wd·w``;
    - trust ratio ``r = η·‖w‖ / ‖u‖`` (``r = 1`` when ``‖w‖`` or ``‖u‖`` is 0);
    - momentum ``v ← μ·v + lr·r·u`` and ``w ← w − v``
      (Nesterov: ``w ← w − (μ·v + lr·r·u)``).

    As in SimCLR, one-dimensional tensors (biases and the affine weights of batch / layer
    norms) get neither weight decay nor the trust ratio: their update is plain momentum SGD,
    ``u = g`` and ``r = 1``. The learning rate sits inside the momentum buffer as in SimCLR's
    implementation, so a schedule's change of ``lr`` does not rescale past steps.

    Args:
        params: parameters or ``param_groups`` dicts.
        lr: learning rate (SimCLR: 0.3 × batch size / 256 with warm-up and cosine decay).
        momentum: μ (0.9 in SimCLR).
        nesterov: Nesterov momentum.
        weight_decay: wd on the tensors with two or more dimensions (1e-6 in SimCLR).
        trust_coefficient: η (0.001 in You et al. and SimCLR).
    """

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.9,
                 nesterov: bool = False, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.001) -> None:
        if lr <= 0 or momentum < 0 or weight_decay < 0 or trust_coefficient <= 0:
            raise ValueError(
                f"LARS needs lr > 0, momentum >= 0, weight_decay >= 0 and trust_coefficient > "
                f"0; got lr={lr}, momentum={momentum}, weight_decay={weight_decay}, "
                f"trust_coefficient={trust_coefficient}"
            )
        if nesterov and momentum == 0:
            raise ValueError("LARS with nesterov=True needs momentum > 0")
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                        trust_coefficient=trust_coefficient)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient; returns ``closure()``'s loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            momentum, lr = group["momentum"], group["lr"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                update = p.grad
                scaled_lr: float | torch.Tensor = lr
                if p.ndim > 1:
                    update = update.add(p, alpha=group["weight_decay"])
                    w_norm, u_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(update)
                    ratio = torch.where((w_norm > 0) & (u_norm > 0),
                                        group["trust_coefficient"] * w_norm / u_norm,
                                        torch.ones_like(w_norm))
                    scaled_lr = lr * ratio
                step = update * scaled_lr
                if momentum > 0:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = step.clone()
                    else:
                        state["momentum_buffer"].mul_(momentum).add_(step)
                    buffer = state["momentum_buffer"]
                    step = buffer * momentum + step if group["nesterov"] else buffer
                p.sub_(step)
        return loss


def schedule_factor(
    schedule: ScheduleName,
    max_epochs: float,
    milestones: Sequence[float] | None,
    gamma: float,
    warmup_epochs: float,
) -> Callable[[float], float]:
    """Return ``epoch -> lr multiplier`` for the given schedule.

    Args:
        schedule: ``"constant"``, ``"multistep"`` (×``gamma`` at each milestone epoch),
            ``"cosine"`` (to 0 at ``max_epochs``) or ``"linear"`` (from 1 at the end of the
            warm-up straight down to 0 at ``max_epochs``: with ``warmup_epochs`` half of
            training, the cyclic schedule of fast adversarial training, Wong et al. 2020).
        max_epochs: training length in epochs (cosine horizon; default milestones).
        milestones: epochs of the multistep decays; ``None`` uses 50% and 75% of training.
        gamma: multistep decay factor.
        warmup_epochs: linear warm-up from 0 over this many epochs.
    """
    if schedule not in ("constant", "multistep", "cosine", "linear"):
        raise ValueError(
            f"unknown schedule {schedule!r}; use constant, multistep, cosine or linear")
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
        if schedule == "linear":
            remaining = (max_epochs - epoch) / max(max_epochs - warmup_epochs, 1e-8)
            return min(max(remaining, 0.0), 1.0)
        return 1.0

    return factor
