"""Single-step attacks (FGSM, FGSM-RS, N-FGSM): budgets, projection, hand computation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lit_robust.attacks import SingleStepAttack, single_step
from lit_robust.methods import FGSMRS, NFGSM, GradAlign, SingleStepAdversarialTraining

EPS = 8 / 255


def linear_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))


def images(count: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Images away from the box edges (0.2–0.8), so that the box never clips a 3ε move."""
    generator = torch.Generator().manual_seed(1)
    x = 0.2 + 0.6 * torch.rand(count, 3, 8, 8, generator=generator)
    return x, torch.randint(0, 4, (count,), generator=generator)


def test_fgsm_from_zero_is_eps_times_the_gradient_sign() -> None:
    """Hand computation: for a linear model ∇ₓ CE = Wᵀ(softmax(Wx + b) − e_y)."""
    model, (x, y) = linear_model(), images(8)
    linear = model[1]
    with torch.no_grad():
        p = torch.softmax(linear(x.flatten(1)), dim=1)
        gradient = (p - nn.functional.one_hot(y, 4).float()) @ linear.weight
    expected = (x + EPS * gradient.view_as(x).sign()).clamp(0, 1)
    torch.testing.assert_close(single_step(model, x, y, eps=EPS), expected, rtol=0, atol=1e-7)


def test_fgsm_rs_stays_within_eps_and_moves_off_the_start() -> None:
    model, (x, y) = linear_model(), images()
    torch.manual_seed(2)
    delta = FGSMRS(backbone="tiny_cnn").attack(model, x, y) - x
    assert delta.abs().max() <= EPS + 1e-6
    # α = 1.25ε from a start in [−ε, ε]: every coordinate ends at ±ε or moved by 1.25ε
    # (a start within 0.25ε of the far side ends inside), never at its start: 62.5% of the
    # coordinates end on the face of the cube (50% for a step of ε).
    at_face = (delta.abs() > EPS - 1e-6).float().mean().item()
    assert at_face == pytest.approx(0.625, abs=0.02)


def test_nfgsm_perturbations_exceed_eps_and_stay_within_three_eps() -> None:
    model, (x, y) = linear_model(), images()
    torch.manual_seed(3)
    x_adv = NFGSM(backbone="tiny_cnn").attack(model, x, y)
    delta = x_adv - x
    assert delta.abs().max() <= 3 * EPS + 1e-6
    assert (delta.abs() > EPS + 1e-6).float().mean() > 0.3  # not projected onto the ε-ball
    assert delta.abs().max() > 2.5 * EPS
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_nfgsm_with_clip_projects_like_fgsm_rs() -> None:
    model, (x, y) = linear_model(), images()
    delta = NFGSM(backbone="tiny_cnn", clip=1.0).attack(model, x, y) - x
    assert delta.abs().max() <= EPS + 1e-6


def test_the_random_start_spans_k_eps() -> None:
    """With α tiny the result is the start itself: uniform in [−kε, kε] (k = 2)."""
    model, (x, y) = linear_model(), images(256)
    torch.manual_seed(4)
    delta = single_step(model, x, y, eps=EPS, alpha=1e-9, noise_scale=2.0, clip=None) - x
    assert delta.abs().max() <= 2 * EPS + 1e-6
    assert delta.abs().max() > 1.95 * EPS
    assert delta.mean().abs() < 0.02 * EPS


@pytest.mark.parametrize("method", [SingleStepAdversarialTraining, FGSMRS, NFGSM, GradAlign])
@pytest.mark.parametrize("bad, message", [
    ({"alpha": 0.0}, "alpha"), ({"alpha": -0.01}, "alpha"), ({"eps": 8.0}, "larger than 1"),
])
def test_bad_steps_and_budgets_fail_at_construction(method, bad, message) -> None:
    with pytest.raises(ValueError, match=message):
        method(backbone="tiny_cnn", **bad)


@pytest.mark.parametrize("bad", [{"noise_scale": -1.0}, {"clip": 0.0}])
def test_bad_noise_and_clip_fail(bad) -> None:
    with pytest.raises(ValueError):
        SingleStepAttack(eps=EPS, **bad)


def test_methods_attack_in_train_mode_by_default_and_restore_the_mode() -> None:
    """The official codes attack with BatchNorm in train mode; the mode is restored after."""
    seen = []

    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(self.training)
            return x.flatten(1)[:, :4]

    method = NFGSM(backbone="tiny_cnn")
    method.model = Probe().eval()
    x, y = images(4)
    method.make_adversarial(x, y)
    assert seen == [True] and not method.model.training
    method.attack_in_eval_mode = True
    method.make_adversarial(x, y)
    assert seen[-1] is False
