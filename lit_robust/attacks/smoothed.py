"""SmoothAdv: L2 PGD against the smoothed soft classifier.

Salman et al., "Provably Robust Deep Learning via Adversarially Trained Smoothed
Classifiers", NeurIPS 2019, §3: the attack maximizes the cross-entropy of the *soft* smoothed
classifier G(x') = E_η[softmax f(x' + η)], estimated with m fixed noise draws η₁ … η_m
(the Monte-Carlo objective of their Eq. (S) with the same noise for every step, as their
``train_pgd.py``):

    ℓ(x') = −log( (1/m)·Σᵢ softmax(f(x' + ηᵢ))_y ).

Each step moves δ by 2ε/T along the L2-normalized gradient (a zero gradient is replaced by a
random direction), clamps x + δ to [0, 1] and rescales δ into the ε-ball; the start is δ = 0,
as in the official ``PGD_L2`` attack. The function only reads the model; the caller sets its
mode (SmoothAdv attacks in eval mode).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

SOFT_PROBABILITY_FLOOR = 1e-20
"""Floor of the averaged softmax before its logarithm (the official code's clamp)."""


def smoothed_cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """Per-example cross-entropy of the soft smoothed classifier.

    Args:
        logits: logits of the noisy copies, shape (m, N, K): copy i of image n at ``[i, n]``.
        y: labels, shape (N,).

    Returns:
        ``−log(max(mean_i softmax(logits[i, n])[yₙ], 1e-20))``, shape (N,), float32.
    """
    if logits.dim() != 3 or y.shape != logits.shape[1:2]:
        raise ValueError(f"expected logits (m, N, K) and labels (N,), got {tuple(logits.shape)} "
                         f"and {tuple(y.shape)}")
    soft = torch.softmax(logits.float(), dim=2).mean(dim=0)
    picked = soft.gather(1, y.view(-1, 1)).squeeze(1)
    return -picked.clamp_min(SOFT_PROBABILITY_FLOOR).log()


def smooth_adv_pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    noise: Tensor,
    eps: float,
    steps: int,
    step_size: float | None = None,
) -> Tensor:
    """SmoothAdv's PGD: L2 attack on the soft smoothed classifier with fixed noise draws.

    Args:
        model: base classifier over [0, 1] images (normalization inside).
        x: clean images in [0, 1], shape (N, C, H, W).
        y: labels, shape (N,).
        noise: the m noise draws, shape (m, N, C, H, W), already scaled by σ (not clamped:
            the smoothing distribution); the same draws serve every step.
        eps: L2 radius in pixel units.
        steps: T, the number of steps.
        step_size: the step; ``None`` uses 2ε/T (the official attack's).

    Returns:
        The adversarial images x + δ in [0, 1] with ‖δ‖₂ ≤ ε (detached, without the noise).
    """
    if noise.dim() != x.dim() + 1 or noise.shape[1:] != x.shape:
        raise ValueError(f"noise must have shape (m, *x.shape) = (m, {tuple(x.shape)}), got "
                         f"{tuple(noise.shape)}")
    if eps < 0 or steps < 0:
        raise ValueError(f"need eps >= 0 and steps >= 0, got eps={eps} and steps={steps}")
    x = x.detach()
    if eps == 0 or steps == 0:
        return x.clone()
    step_size = 2 * eps / steps if step_size is None else step_size
    copies = noise.shape[0]
    delta = torch.zeros_like(x)
    view = (-1, *([1] * (x.dim() - 1)))
    for _ in range(steps):
        delta.requires_grad_(True)
        logits = model(((x + delta).unsqueeze(0) + noise).flatten(0, 1))
        objective = smoothed_cross_entropy(logits.view(copies, x.shape[0], -1), y).sum()
        (grad,) = torch.autograd.grad(objective, delta)
        with torch.no_grad():
            norms = grad.flatten(1).norm(dim=1).view(view)
            grad = torch.where(norms == 0, torch.randn_like(grad), grad)
            norms = grad.flatten(1).norm(dim=1).view(view)
            delta = delta + step_size * grad / norms
            delta = (x + delta).clamp(0, 1) - x
            delta = delta * (eps / delta.flatten(1).norm(dim=1).clamp_min(1e-12)).clamp(
                max=1.0).view(view)
    return (x + delta.detach()).clamp(0, 1)
