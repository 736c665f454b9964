"""GradAlign: the regularizer against hand computations, and its double back-propagation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lit_robust.losses import gradient_alignment
from lit_robust.methods import GradAlign

EPS = 8 / 255


def test_gradient_alignment_is_one_minus_the_mean_cosine_of_nonzero_pairs() -> None:
    a = torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0]])
    b = torch.tensor([[1.0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 2]])
    # example 1 has a zero gradient and is left out; cosines 1/√2 and 0
    expected = 1 - (1 / math.sqrt(2) + 0.0) / 2
    assert gradient_alignment(a, b).item() == pytest.approx(expected, abs=1e-6)
    assert gradient_alignment(a, a).item() == pytest.approx(0.0, abs=1e-6)
    assert gradient_alignment(a, -a).item() == pytest.approx(2.0, abs=1e-6)
    assert gradient_alignment(torch.zeros(2, 3), torch.ones(2, 3)).item() == 0.0


def linear_grad_align(eps: float = EPS, **kwargs) -> GradAlign:
    method = GradAlign(backbone="tiny_cnn", eps=eps, **kwargs)
    torch.manual_seed(0)
    method.model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    return method


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.rand(6, 3, 8, 8, generator=generator), torch.tensor([0, 1, 2, 3, 0, 1])


def input_gradient(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor,
                   y: torch.Tensor) -> torch.Tensor:
    """Hand formula of ∇ₓ CE(Wx + b, y) per example: (softmax(Wx + b) − e_y)ᵀ W."""
    p = torch.softmax(x.flatten(1) @ weight.T + bias, dim=1)
    return (p - F.one_hot(y, weight.shape[0]).float()) @ weight


def reference_loss(method: GradAlign, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor,
                   eta: torch.Tensor, detach_clean: bool) -> torch.Tensor:
    """CE(x_adv) + λ·(1 − mean cos(g(x), g(x + η))) with g by the hand formula: its gradient
    with respect to W needs only first-order autograd."""
    weight, bias = method.model[1].weight, method.model[1].bias
    clean = input_gradient(weight, bias, x, y)
    clean = clean.detach() if detach_clean else clean
    noisy = input_gradient(weight, bias, x + eta, y)
    cosine = F.cosine_similarity(clean, noisy, dim=1)
    ce = F.cross_entropy(x_adv.flatten(1) @ weight.T + bias, y)
    return ce + method.grad_align_lambda * (1 - cosine.mean())


@pytest.mark.parametrize("both", [False, True])
def test_loss_and_its_weight_gradient_match_the_hand_computation(both: bool) -> None:
    """The regularizer's weight gradient goes through the input gradient at x + η (double
    backprop; both input gradients with ``differentiate_both_gradients``). Without
    ``create_graph`` the regularizer would add nothing to the weight gradient. A large ε makes
    the two gradients of this linear model differ enough to see it."""
    method = linear_grad_align(eps=0.5, grad_align_lambda=0.5, differentiate_both_gradients=both)
    x, y = batch()
    x_adv = method.make_adversarial(x, y)
    torch.manual_seed(5)
    loss, _ = method.training_loss(x, x_adv, y)
    torch.manual_seed(5)
    eta = torch.empty_like(x).uniform_(-0.5, 0.5)
    expected = reference_loss(method, x, x_adv, y, eta, detach_clean=not both)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)

    params = list(method.model.parameters())
    got = torch.autograd.grad(loss, params)
    want = torch.autograd.grad(expected, params)
    plain = torch.autograd.grad(F.cross_entropy(method.model(x_adv), y), params)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-7)
    assert (got[0] - plain[0]).abs().max() > 1e-4  # the regularizer reaches the weight gradient


def test_the_official_default_detaches_the_clean_gradient() -> None:
    """Detached (official code) and differentiated-through gradients give different weight
    gradients on the same batch and noise."""
    x, y = batch()
    grads = []
    for both in (False, True):
        method = linear_grad_align(grad_align_lambda=0.5, differentiate_both_gradients=both)
        x_adv = method.make_adversarial(x, y)
        torch.manual_seed(5)
        loss, _ = method.training_loss(x, x_adv, y)
        grads.append(torch.autograd.grad(loss, method.model[1].weight)[0])
    assert (grads[0] - grads[1]).abs().max() > 1e-5


def test_lambda_zero_is_fgsm_training_and_negative_lambda_fails() -> None:
    x, y = batch()
    method = linear_grad_align(grad_align_lambda=0.0)
    x_adv = method.make_adversarial(x, y)
    loss, _ = method.training_loss(x, x_adv, y)
    torch.testing.assert_close(loss, F.cross_entropy(method.model(x_adv), y))
    with pytest.raises(ValueError, match="grad_align_lambda"):
        GradAlign(backbone="tiny_cnn", grad_align_lambda=-0.1)


def test_the_attack_is_fgsm_from_zero_with_a_step_of_eps() -> None:
    method = linear_grad_align()
    x, y = batch()
    weight, bias = method.model[1].weight, method.model[1].bias
    with torch.no_grad():
        expected = (x + EPS * input_gradient(weight, bias, x, y).view_as(x).sign()).clamp(0, 1)
    torch.testing.assert_close(method.make_adversarial(x, y), expected, rtol=0, atol=1e-7)
