"""Projected gradient descent (Madry et al., ICLR 2018) and FGSM with random start.

Attacks work in [0, 1] pixel space: the model receives pixel images and normalizes them
itself, so every ε and step size here is in pixel units. The functions only read the model;
which BatchNorm mode it is in while they run is the caller's decision. Device and dtype come
from ``x``. Inside the iteration loop nothing synchronizes host and device.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from lit_robust.attacks.image_noise import ImageNoise, image_keys
from lit_robust.attacks.objectives import AttackLoss, attack_objective, per_example_loss

Norm = Literal["linf", "l2"]
Start = Literal["ball", "sphere", "normal"]
"""Where a random start lies: ``ball`` uniform in the ε-ball's volume, ``sphere`` uniform on
its L2 sphere, ``normal`` at x + 0.001·N(0, I) (TRADES)."""

TRADES_START_STD = 0.001
"""Standard deviation of the ``normal`` start, as in the official TRADES code."""


def check_budget(eps: float, step_size: float | None, norm: Norm) -> None:
    """Reject budgets that are clearly not in pixel units.

    Args:
        eps: perturbation radius in [0, 1] pixel units.
        step_size: step size in pixel units (``None`` allowed).
        norm: ``"linf"`` or ``"l2"``.

    Raises:
        ValueError: when ``eps`` is negative, when an L∞ ε is larger than 1 (it looks like
            0–255 units: write ``8/255``, not ``8``), or when the norm is unknown.
    """
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if norm == "linf" and eps > 1:
        raise ValueError(
            f"L-inf eps={eps} is larger than 1: budgets are in [0, 1] pixel units; "
            f"write {eps}/255 = {eps / 255:.6f} instead"
        )
    if step_size is not None and step_size < 0:
        raise ValueError(f"step_size must be >= 0, got {step_size}")


def check_start(start: Start, norm: Norm) -> None:
    """Reject an unknown random start, or the L2 sphere start with the L∞ norm.

    Raises:
        ValueError: saying which starts exist for the norm.
    """
    if start not in ("ball", "sphere", "normal"):
        raise ValueError(f"start must be 'ball', 'sphere' or 'normal', got {start!r}")
    if start == "sphere" and norm != "l2":
        raise ValueError("start='sphere' is an L2 start; use start='ball' or 'normal' for linf")


def _flat_norm(t: Tensor) -> Tensor:
    return t.flatten(1).norm(p=2, dim=1).clamp_min(1e-12).view(-1, *([1] * (t.dim() - 1)))


def project(delta: Tensor, eps: float, norm: Norm) -> Tensor:
    """Project a perturbation onto the ε-ball of the given norm (per example)."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    factor = (eps / _flat_norm(delta)).clamp(max=1.0)
    return delta * factor


def default_step_size(eps: float, steps: int) -> float:
    """The step size used when none is given: 2.5·ε/steps (Madry et al., ICLR 2018).

    For L∞ 8/255 with 10 steps this is 2/255; for L2 0.5 with 10 steps it is 0.125, so that
    the iterates can reach the ε-sphere whatever the norm. ``steps = 0`` counts as one step.
    """
    return 2.5 * eps / max(steps, 1)


def random_init(x: Tensor, eps: float, norm: Norm, start: Start = "ball",
                noise: ImageNoise | None = None) -> Tensor:
    """A random start δ for PGD, kept inside the [0, 1] image box.

    Args:
        x: clean images in [0, 1], shape (N, ...).
        eps: radius of the ε-ball in pixel units.
        norm: ``"linf"`` or ``"l2"``.
        start: ``"ball"`` (default): uniform in the volume of the ε-ball; for L2 the radius
            is ε·U^(1/d) with d the number of pixels, so in image dimensions almost every
            start lies near radius ε. ``"sphere"``: L2 only, uniform on the sphere of radius
            ε (the robustness library's start). ``"normal"``: 0.001·N(0, I) projected onto the
            ball (the official TRADES code).
        noise: draw from these per-image numbers
            (:class:`~lit_robust.attacks.image_noise.ImageNoise`) instead of the global
            generator.

    Returns:
        δ with ``x + δ`` in [0, 1] and ``‖δ‖ ≤ ε``.

    Raises:
        ValueError: for an unknown ``start``, or ``"sphere"`` with ``norm="linf"``.
    """
    check_start(start, norm)
    randn = torch.randn_like if noise is None else noise.randn
    if start == "normal":
        delta = project(TRADES_START_STD * randn(x), eps, norm)
    elif norm == "linf":
        delta = (torch.empty_like(x).uniform_(-eps, eps) if noise is None
                 else (2 * noise.rand(x) - 1) * eps)
    else:
        direction = randn(x)
        direction = direction / _flat_norm(direction)
        shape = (x.shape[0], *([1] * (x.dim() - 1)))
        if start == "sphere":
            radius = torch.ones(shape, device=x.device, dtype=x.dtype)
        else:
            dims = x[0].numel()
            uniform = (torch.rand(shape, device=x.device, dtype=x.dtype) if noise is None
                       else noise.rand(torch.empty(shape, device=x.device, dtype=x.dtype)))
            radius = uniform ** (1.0 / dims)
        delta = direction * radius * eps
    return (x + delta).clamp(0, 1) - x


def _ascent_step(grad: Tensor, step_size: float, norm: Norm) -> Tensor:
    if norm == "linf":
        return step_size * grad.sign()
    return step_size * grad / _flat_norm(grad)


def _single_run(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    eps: float,
    step_size: float,
    steps: int,
    norm: Norm,
    loss: AttackLoss,
    random_start: bool,
    start: Start,
    noise: ImageNoise | None,
) -> Tensor:
    delta = random_init(x, eps, norm, start, noise) if random_start else torch.zeros_like(x)
    for _ in range(steps):
        delta.requires_grad_(True)
        objective = attack_objective(model(x + delta), target, loss)
        (grad,) = torch.autograd.grad(objective, delta)
        with torch.no_grad():
            delta = delta + _ascent_step(grad, step_size, norm)
            delta = project(delta, eps, norm)
            delta = (x + delta).clamp(0, 1) - x
    return (x + delta.detach()).clamp(0, 1)


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float = 8 / 255,
    step_size: float | None = None,
    steps: int = 10,
    norm: Norm = "linf",
    loss: AttackLoss = "ce",
    random_start: bool = True,
    restarts: int = 1,
    target: Tensor | None = None,
    start: Start = "ball",
    indices: Tensor | None = None,
    seed: int = 0,
) -> Tensor:
    """Untargeted PGD that maximizes ``loss`` within an ε-ball around ``x``.

    Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018.
    With several restarts, each example keeps the run that hurts it most: a misclassified
    run wins over a correct one, and among equals the one with the higher loss.

    With ``indices`` (each image's index in its dataset) the random start of every restart
    of image i is drawn from ``(seed, indices[i], restart)`` alone
    (:mod:`lit_robust.attacks.image_noise`), so an image gets the same attack whatever the
    batch it is in, the DDP shard or the number of processes. Without them the random starts
    come from the global generator (training, where a resumed run restores it).

    Args:
        model: classifier over [0, 1] images (normalization inside).
        x: clean images in [0, 1], shape (N, C, H, W).
        y: integer labels, shape (N,).
        eps: radius in pixel units (L∞ 8/255, L2 0.5).
        step_size: step in pixel units; ``None`` uses 2.5·ε/steps
            (:func:`default_step_size`: 2/255 for L∞ 8/255 with 10 steps).
        steps: number of gradient steps (0 returns the random start, or ``x``).
        norm: ``"linf"`` or ``"l2"``.
        loss: ``"ce"`` (cross-entropy with ``y``) or ``"kl"`` (TRADES: KL from the clean
            prediction, which must then be given as ``target`` probabilities or is computed
            here from ``model(x)``).
        random_start: start from a random point (see ``start``); ``False`` starts at ``x``.
        restarts: independent runs; the per-example worst case is returned.
        target: for ``loss="kl"``, the clean probabilities to move away from.
        start: the random start (:func:`random_init`): ``"ball"`` (default, uniform in the
            ball's volume), ``"sphere"`` (L2: on the ε-sphere) or ``"normal"``
            (x + 0.001·N(0, I), TRADES).
        indices: the images' indices in their dataset, shape (N,): per-image random starts.
        seed: the seed of the per-image random starts (with ``indices``).

    Returns:
        Adversarial images in [0, 1] with ``‖x_adv − x‖ ≤ ε``, detached.
    """
    check_budget(eps, step_size, norm)
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    check_start(start, norm)
    if step_size is None:
        step_size = default_step_size(eps, steps)
    x = x.detach()
    if loss == "kl" and target is None:
        with torch.no_grad():
            target = torch.softmax(model(x).float(), dim=1)
    elif target is None:
        target = y
    if eps == 0:
        return x.clone()

    if indices is not None and indices.shape != y.shape:
        raise ValueError(f"indices must hold one index per image, got shape "
                         f"{tuple(indices.shape)} for {y.shape[0]} images")
    keys = image_keys(seed, indices.to(x.device)) if indices is not None else None
    best = None
    best_wrong = best_loss = None
    for restart in range(restarts):
        noise = ImageNoise(keys, stream=restart) if keys is not None else None
        x_adv = _single_run(model, x, target, eps, step_size, steps, norm, loss, random_start,
                            start, noise)
        if restarts == 1:
            return x_adv
        with torch.no_grad():
            logits = model(x_adv)
            wrong = logits.argmax(1) != y
            run_loss = per_example_loss(logits, target, loss)
        if best is None:
            best, best_wrong, best_loss = x_adv, wrong, run_loss
            continue
        better = (wrong & ~best_wrong) | ((wrong == best_wrong) & (run_loss > best_loss))
        mask = better.view(-1, *([1] * (x.dim() - 1)))
        best = torch.where(mask, x_adv, best)
        best_wrong = best_wrong | wrong
        best_loss = torch.where(better, run_loss, best_loss)
    return best


def fgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float = 8 / 255,
    step_size: float | None = None,
    random_start: bool = True,
) -> Tensor:
    """FGSM with random start (Wong et al., "Fast is better than free", ICLR 2020).

    Args:
        model: classifier over [0, 1] images.
        x: clean images in [0, 1].
        y: integer labels.
        eps: L∞ radius in pixel units.
        step_size: the single step; ``None`` uses 1.25·ε as in the paper.
        random_start: start from a uniform point of the ε-ball.

    Returns:
        Adversarial images in [0, 1] within the L∞ ε-ball, detached.
    """
    if step_size is None:
        step_size = 1.25 * eps
    return pgd(model, x, y, eps=eps, step_size=step_size, steps=1, norm="linf",
               random_start=random_start)
