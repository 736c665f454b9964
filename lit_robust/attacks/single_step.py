"""Single-step L∞ attacks of fast adversarial training: FGSM, FGSM-RS and N-FGSM.

One step of size α along the sign of the input gradient, taken from a random start
η ~ U(−k·ε, k·ε)^d and optionally projected back onto an L∞ ball:

- FGSM (Goodfellow et al., ICLR 2015): k = 0, α = ε, projected onto the ε-ball.
- FGSM-RS (Wong, Rice and Kolter, "Fast is better than free: Revisiting adversarial
  training", ICLR 2020, §4 and Algorithm 3): k = 1, α = 1.25·ε, projected onto the ε-ball.
- N-FGSM (de Jorge et al., "Make Some Noise: Reliable and Efficient Single-Step Adversarial
  Training", NeurIPS 2022, §4): k = 2, α = ε, **not** projected, so ‖δ‖∞ ≤ k·ε + α = 3ε.

As in the three official codes the random start is clamped to the [0, 1] image box before the
gradient is taken, and the result is clamped to the box again. Like
:func:`~lit_robust.attacks.pgd.pgd` the function only reads the model; the caller sets its
BatchNorm mode.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lit_robust.attacks.objectives import attack_objective
from lit_robust.attacks.pgd import check_budget


def check_single_step(eps: float, alpha: float, noise_scale: float,
                      clip: float | None) -> None:
    """Reject settings a single-step attack cannot use.

    Raises:
        ValueError: for an ε not in [0, 1] pixel units, ``alpha <= 0`` (the step would not
            move the input), ``noise_scale < 0`` or ``clip <= 0``.
    """
    check_budget(eps, None, "linf")
    if not alpha > 0:
        raise ValueError(
            f"alpha (the step size) must be > 0 pixel units, got {alpha}; e.g. 1.25·eps for "
            "FGSM-RS or eps for N-FGSM (leave it unset for the method's default)"
        )
    if noise_scale < 0:
        raise ValueError(f"noise_scale must be >= 0 (a multiple of eps), got {noise_scale}")
    if clip is not None and not clip > 0:
        raise ValueError(
            f"clip must be > 0 (the projection radius as a multiple of eps) or null for no "
            f"projection, got {clip}"
        )


def single_step_with_gradient(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    alpha: float,
    noise_scale: float,
    clip: float | None,
    create_graph: bool = False,
) -> tuple[Tensor, Tensor]:
    """One signed-gradient step from a uniform random start, and the gradient it used.

    Args:
        model: classifier over [0, 1] images (normalization inside).
        x: clean images in [0, 1], shape (N, C, H, W).
        y: integer labels, shape (N,).
        eps: the L∞ budget ε in pixel units.
        alpha: the step size α in pixel units.
        noise_scale: k of the start η ~ U(−k·ε, k·ε); 0 starts at ``x``.
        clip: project the perturbation onto the L∞ ball of radius ``clip``·ε; ``None`` keeps
            it unprojected (N-FGSM).
        create_graph: keep the graph of the returned gradient (double back-propagation, as
            GradAlign's regularizer needs it); the step itself never carries a graph.

    Returns:
        ``(x_adv, gradient)``: the adversarial images in [0, 1] (detached) and
        ∇_δ Σₙ CE(f(x + δ)ₙ, yₙ) at the start point δ = η.
    """
    x = x.detach()
    if noise_scale > 0:
        bound = noise_scale * eps
        start = (x + torch.empty_like(x).uniform_(-bound, bound)).clamp(0, 1) - x
    else:
        start = torch.zeros_like(x)
    start.requires_grad_(True)
    objective = attack_objective(model(x + start), y, "ce")
    (gradient,) = torch.autograd.grad(objective, start, create_graph=create_graph)
    with torch.no_grad():
        delta = start.detach() + alpha * gradient.detach().sign()
        if clip is not None:
            delta = delta.clamp(-clip * eps, clip * eps)
        x_adv = (x + delta).clamp(0, 1)
    return x_adv, gradient


class SingleStepAttack:
    """The settings of a single-step attack; calling the object runs it.

    Args:
        eps: the L∞ budget ε in pixel units.
        step_size: the step α; ``None`` uses ε.
        noise_scale: k of the uniform start U(−k·ε, k·ε); 0 starts at ``x``.
        clip: projection radius as a multiple of ε; ``None`` does not project.

    Raises:
        ValueError: see :func:`check_single_step`.
    """

    def __init__(self, eps: float = 8 / 255, step_size: float | None = None,
                 noise_scale: float = 0.0, clip: float | None = 1.0) -> None:
        step_size = eps if step_size is None else step_size
        check_single_step(eps, step_size, noise_scale, clip)
        self.eps = eps
        self.step_size = step_size
        self.noise_scale = noise_scale
        self.clip = clip

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return self.with_gradient(model, x, y)[0]

    def with_gradient(self, model: nn.Module, x: Tensor, y: Tensor,
                      create_graph: bool = False) -> tuple[Tensor, Tensor]:
        """``(x_adv, gradient at the start)``: :func:`single_step_with_gradient`."""
        return single_step_with_gradient(model, x, y, self.eps, self.step_size,
                                         self.noise_scale, self.clip, create_graph)

    def __repr__(self) -> str:
        return (f"SingleStepAttack(eps={self.eps:.6g}, step_size={self.step_size:.6g}, "
                f"noise_scale={self.noise_scale}, clip={self.clip})")


def single_step(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float = 8 / 255,
    alpha: float | None = None,
    noise_scale: float = 0.0,
    clip: float | None = 1.0,
) -> Tensor:
    """FGSM-type single-step attack (see the module docstring for the three variants).

    Args:
        model: classifier over [0, 1] images.
        x: clean images in [0, 1].
        y: integer labels.
        eps: the L∞ budget ε in pixel units.
        alpha: the step size; ``None`` uses ε.
        noise_scale: k of the uniform start U(−k·ε, k·ε); 0 starts at ``x``.
        clip: projection radius as a multiple of ε; ``None`` does not project.

    Returns:
        Adversarial images in [0, 1], detached.
    """
    return SingleStepAttack(eps, alpha, noise_scale, clip)(model, x, y)
