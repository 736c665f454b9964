"""Module robust criticality (MRC): how much the robust loss can rise by perturbing one module.

RiFT (Zhu et al., "Improving Generalization of Adversarial Training via Robust Critical
Fine-Tuning", ICCV 2023), Definition 1:

    MRC(θ_i) = max_{‖Δθ_i‖₂ ≤ ε‖θ_i‖₂} L_adv(θ with θ_i + Δθ_i) − L_adv(θ)

The maximum is approximated as in the paper's code: gradient ascent on the cross-entropy of a
fixed set of adversarial examples (SGD, lr 1, no momentum) for ``epochs`` passes, with Δθ
projected onto the ball once per pass (or after every step), and the loss of the whole set
measured after each pass. The MRC is the largest of these losses minus the unperturbed loss;
the unperturbed loss itself counts as a candidate (the paper's code starts its maximum at 0),
so the MRC is never negative.

Where this differs from a direct re-run of that code, only in how it is computed:

- the model is not copied per module: the one weight tensor is perturbed in place and copied
  back afterwards;
- the loss after each pass is one no-grad pass over the set at the projected weights (a loss
  accumulated during the ascent pass would mix weights from different steps, and before the
  projection, so it is not used);
- the part of the network that runs before the perturbed module is computed once per module
  and reused (:mod:`lit_robust.methods.rift.prefix_reuse`), in the ascent and the evaluation
  passes alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_robust.attacks import PGDAttack
from lit_robust.methods.rift.prefix_reuse import ForwardRunner, build_runner
from lit_robust.models.modes import eval_mode
from lit_robust.models.normalize import NormalizedClassifier
from lit_robust.models.surgery import named_candidate_modules
from lit_robust.progress import Progress

Batch = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class CriticalityRow:
    """The MRC of one module and the robust loss / accuracy behind it.

    Attributes:
        module: dotted module name (relative to the backbone ``net`` of a
            :class:`~lit_robust.models.normalize.NormalizedClassifier`).
        mrc: module robust criticality, ``loss_after − loss_before`` (≥ 0).
        loss_before: mean cross-entropy on the adversarial set, unperturbed weights.
        loss_after: the largest mean cross-entropy found within the ε-ball.
        robust_acc_before: accuracy on the adversarial set, unperturbed (fraction in [0, 1]).
        robust_acc_after: accuracy at the weights of ``loss_after``.
        worst_epoch: the ascent pass that reached ``loss_after`` (0: the unperturbed weights).
    """

    module: str
    mrc: float
    loss_before: float
    loss_after: float
    robust_acc_before: float
    robust_acc_after: float
    worst_epoch: int

    @property
    def robust_acc_drop(self) -> float:
        """Robust accuracy lost at the worst perturbation (fraction)."""
        return self.robust_acc_before - self.robust_acc_after

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (with ``robust_acc_drop``)."""
        return {**asdict(self), "robust_acc_drop": self.robust_acc_drop}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CriticalityRow:
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: v for k, v in data.items() if k != "robust_acc_drop"})


def backbone_of(model: nn.Module) -> nn.Module:
    """The module whose names are reported: ``model.net`` for a NormalizedClassifier."""
    return model.net if isinstance(model, NormalizedClassifier) else model


def candidate_module_names(model: nn.Module) -> list[str]:
    """Every ``Conv2d`` and ``Linear`` of the backbone, in model order (RiFT's candidates)."""
    return [name for name, _ in named_candidate_modules(backbone_of(model))]


def resolve_modules(model: nn.Module, modules: Iterable[str] | None) -> list[str]:
    """Check module names against the candidates (``None``: all of them).

    Raises:
        ValueError: for an unknown name or a module without a ``weight`` parameter; the
            message lists the available names.
    """
    available = candidate_module_names(model)
    if modules is None:
        return available
    names = list(modules)
    root = backbone_of(model)
    for name in names:
        try:
            module = root.get_submodule(name)
        except AttributeError:
            module = None
        if module is None or not isinstance(getattr(module, "weight", None), nn.Parameter):
            raise ValueError(
                f"unknown module {name!r} (or it has no weight parameter); candidate modules: "
                f"{', '.join(available)}"
            )
    return names


def generate_adversarial_set(
    model: nn.Module,
    batches: Iterable[Batch],
    attack: PGDAttack | None = None,
    max_samples: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Attack held-out images once, against the given (unperturbed) weights, in eval mode.

    Args:
        model: the classifier over [0, 1] images.
        batches: ``(images, labels)`` batches, e.g. a validation DataLoader.
        attack: the attack; default PGD-10, L∞ 8/255, step 2/255, random start (RiFT).
        max_samples: stop after this many images (``None``: all of them).

    Returns:
        ``(adversarial images, labels)`` on the model's device.

    Raises:
        ValueError: when ``batches`` yields no image.
    """
    attack = attack if attack is not None else PGDAttack()
    device = next(model.parameters()).device
    images: list[Tensor] = []
    labels: list[Tensor] = []
    seen = 0
    with eval_mode(model), torch.enable_grad():
        for x, y in batches:
            if max_samples is not None:
                x, y = x[: max_samples - seen], y[: max_samples - seen]
            if len(y) == 0:
                break
            x, y = x.to(device), y.to(device)
            images.append(attack(model, x, y))
            labels.append(y)
            seen += len(y)
            if max_samples is not None and seen >= max_samples:
                break
    if seen == 0:
        raise ValueError("no images to build the adversarial set from; the data loader is empty")
    return torch.cat(images), torch.cat(labels)


def project_weight_(weight: Tensor, origin: Tensor, epsilon: float) -> None:
    """Project ``weight`` in place onto ``‖weight − origin‖₂ ≤ epsilon·‖origin‖₂``.

    The norms are computed in float64; a weight inside the ball is left untouched.
    """
    delta = weight.detach().double() - origin.double()
    radius = epsilon * float(origin.double().norm())
    norm = float(delta.norm())
    if norm > radius:
        weight.copy_((origin.double() + delta * (radius / norm)).to(weight.dtype))


def _evaluate(runner: ForwardRunner, labels: Tensor, batch_size: int) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over the whole set (one no-grad pass)."""
    loss_sum = torch.zeros((), dtype=torch.float64, device=labels.device)
    correct = torch.zeros((), dtype=torch.long, device=labels.device)
    with torch.no_grad():
        for start in range(0, len(labels), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(labels)), device=labels.device)
            logits = runner(idx)
            target = labels.index_select(0, idx)
            loss_sum += F.cross_entropy(logits.float(), target, reduction="sum").double()
            correct += (logits.argmax(dim=1) == target).sum()
    return float(loss_sum) / len(labels), float(correct) / len(labels)


def _only_requires_grad(model: nn.Module, param: nn.Parameter) -> dict[nn.Parameter, bool]:
    flags = {p: p.requires_grad for p in model.parameters()}
    for p in flags:
        p.requires_grad_(p is param)
    return flags


def _module_criticality(
    model: nn.Module,
    name: str,
    runner: ForwardRunner,
    labels: Tensor,
    before: tuple[float, float],
    epsilon: float,
    epochs: int,
    lr: float,
    batch_size: int,
    project_every_step: bool,
    generator: torch.Generator,
) -> CriticalityRow:
    weight = backbone_of(model).get_submodule(name).weight
    origin = weight.detach().clone()
    worst = (before[0], before[1], 0)
    flags = _only_requires_grad(model, weight)
    try:
        with runner.active():
            for epoch in range(1, epochs + 1):
                order = torch.randperm(len(labels), generator=generator).to(labels.device)
                for start in range(0, len(labels), batch_size):
                    idx = order[start:start + batch_size]
                    loss = F.cross_entropy(runner(idx), labels.index_select(0, idx))
                    grad = None  # stays None when the output does not depend on the weight
                    if loss.requires_grad:
                        (grad,) = torch.autograd.grad(loss, weight, allow_unused=True)
                    with torch.no_grad():
                        if grad is not None:
                            weight.add_(grad, alpha=lr)  # ascent: SGD on −loss
                        if project_every_step:
                            project_weight_(weight, origin, epsilon)
                with torch.no_grad():
                    project_weight_(weight, origin, epsilon)
                loss_e, acc_e = _evaluate(runner, labels, batch_size)
                if loss_e > worst[0]:
                    worst = (loss_e, acc_e, epoch)
    finally:
        with torch.no_grad():
            weight.copy_(origin)
        for p, flag in flags.items():
            p.requires_grad_(flag)
    return CriticalityRow(
        module=name, mrc=worst[0] - before[0], loss_before=before[0], loss_after=worst[0],
        robust_acc_before=before[1], robust_acc_after=worst[1], worst_epoch=worst[2],
    )


def module_robust_criticality(
    model: nn.Module,
    adv_inputs: Tensor,
    labels: Tensor,
    modules: Sequence[str] | None = None,
    epsilon: float = 0.1,
    epochs: int = 10,
    lr: float = 1.0,
    batch_size: int = 128,
    project_every_step: bool = False,
    reuse_prefix: bool = True,
    seed: int = 0,
    progress: bool = True,
) -> list[CriticalityRow]:
    """The MRC of every candidate module (RiFT, Definition 1 and Algorithm 1).

    The model is put in eval mode for the whole search and every weight is back to its
    original value (bit for bit) when the function returns.

    Args:
        model: the adversarially trained classifier over [0, 1] images.
        adv_inputs: the fixed adversarial set (see :func:`generate_adversarial_set`).
        labels: its labels.
        modules: module names to evaluate (relative to ``model.net`` for a
            NormalizedClassifier); ``None``: every Conv2d and Linear.
        epsilon: relative radius of the weight perturbation (the paper's 0.1).
        epochs: ascent passes over the adversarial set (the paper's 10).
        lr: ascent step size (the paper's 1, plain SGD without momentum).
        batch_size: batch size of the ascent and evaluation passes.
        project_every_step: project after every ascent step instead of once per pass.
        reuse_prefix: reuse the computation before each module (no effect on the result
            beyond float rounding; ``False`` uses plain forward passes).
        seed: seed of the per-pass shuffling of the adversarial set.
        progress: print ``MRC search: i/N modules, elapsed, ETA`` lines on rank 0
            (:mod:`lit_robust.progress`).

    Returns:
        One :class:`CriticalityRow` per module, in the order of ``modules``.

    Raises:
        ValueError: for bad settings, mismatched inputs/labels or unknown module names.
    """
    if epsilon <= 0 or epochs < 1 or lr <= 0 or batch_size < 1:
        raise ValueError(
            f"need epsilon > 0, epochs >= 1, lr > 0 and batch_size >= 1, got epsilon={epsilon}, "
            f"epochs={epochs}, lr={lr}, batch_size={batch_size}"
        )
    if adv_inputs.shape[0] != labels.shape[0] or labels.shape[0] == 0:
        raise ValueError(
            f"need as many labels as inputs (and at least one), got {adv_inputs.shape[0]} inputs "
            f"and {labels.shape[0]} labels"
        )
    names = resolve_modules(model, modules)
    generator = torch.Generator().manual_seed(seed)
    rows = []
    counter = Progress("MRC search", len(names), "modules", enabled=progress)
    with eval_mode(model):
        before = _evaluate(ForwardRunner(model, adv_inputs), labels, batch_size)
        runner = None
        for name in names:
            target = backbone_of(model).get_submodule(name)
            runner = build_runner(model, target, adv_inputs, batch_size, reuse_prefix,
                                  previous=runner)
            rows.append(_module_criticality(
                model, name, runner, labels, before, epsilon, epochs, lr, batch_size,
                project_every_step, generator,
            ))
            counter.advance(detail=name)
    return rows


def rank_modules(rows: Sequence[CriticalityRow], k: int = 1, most: bool = False) -> list[str]:
    """The ``k`` least (``most=False``) or most critical modules, ties in model order."""
    if not 1 <= k <= len(rows):
        raise ValueError(f"k must be in [1, {len(rows)}] (the number of modules), got {k}")
    order = sorted(range(len(rows)), key=lambda i: (-rows[i].mrc if most else rows[i].mrc, i))
    return [rows[i].module for i in order[:k]]
