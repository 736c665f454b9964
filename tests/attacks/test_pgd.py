"""Invariants of the functional attacks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lit_robust.attacks import PGDAttack, fgsm, per_example_loss, pgd, project


def small_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(32, 10),
    ).eval()


class RecordingCNN(nn.Module):
    """``small_cnn`` that records every input it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.net = small_cnn()
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return self.net(x)


class Linear2(nn.Module):
    """Binary linear classifier: logits (0, w·x + b)."""

    def __init__(self, w: torch.Tensor, b: float = 0.0) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.b = b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x.flatten(1) * self.w.flatten()).sum(1) + self.b
        return torch.stack([torch.zeros_like(z), z], dim=1)


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(16, 3, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)


@pytest.mark.parametrize("norm,eps", [("linf", 8 / 255), ("l2", 0.5)])
def test_perturbation_within_budget_and_box(norm: str, eps: float, batch) -> None:
    x, y = batch
    x_adv = pgd(small_cnn(), x, y, eps=eps, step_size=eps / 2, steps=7, norm=norm)
    delta = (x_adv - x).flatten(1)
    if norm == "linf":
        assert delta.abs().max() <= eps + 1e-6
    else:
        assert delta.norm(dim=1).max() <= eps + 1e-5
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert not x_adv.requires_grad


@pytest.mark.parametrize("norm,eps", [("linf", 8 / 255), ("l2", 0.5)])
def test_attack_increases_loss(norm: str, eps: float, batch) -> None:
    x, y = batch
    model = small_cnn()
    x_adv = pgd(model, x, y, eps=eps, step_size=eps / 4, steps=10, norm=norm, random_start=False)
    with torch.no_grad():
        clean = F.cross_entropy(model(x), y, reduction="none")
        adv = F.cross_entropy(model(x_adv), y, reduction="none")
    assert (adv >= clean - 1e-6).all()
    assert adv.mean() > clean.mean()


def test_linear_model_linf_optimum_is_eps_sign_w() -> None:
    torch.manual_seed(0)
    w = torch.randn(1, 4, 4)
    x = torch.full((3, 1, 4, 4), 0.5)
    y = torch.zeros(3, dtype=torch.long)  # raising the class-1 logit raises the CE of class 0
    x_adv = pgd(Linear2(w), x, y, eps=0.1, step_size=0.05, steps=5, norm="linf")
    torch.testing.assert_close(x_adv - x, 0.1 * w.sign().expand_as(x), atol=1e-6, rtol=0)


def test_linear_model_l2_optimum_is_eps_w_over_norm() -> None:
    torch.manual_seed(0)
    w = torch.randn(1, 4, 4)
    x = torch.full((2, 1, 4, 4), 0.5)
    y = torch.zeros(2, dtype=torch.long)
    x_adv = pgd(Linear2(w), x, y, eps=0.2, step_size=0.05, steps=50, norm="l2",
                random_start=False)
    expected = 0.2 * w / w.norm()
    torch.testing.assert_close(x_adv - x, expected.expand_as(x), atol=1e-5, rtol=0)


def test_restarts_keep_per_example_worst(batch) -> None:
    x, y = batch
    model = small_cnn()
    torch.manual_seed(3)
    singles = [pgd(model, x, y, eps=8 / 255, steps=2) for _ in range(4)]
    torch.manual_seed(3)
    best = pgd(model, x, y, eps=8 / 255, steps=2, restarts=4)
    with torch.no_grad():
        single_losses = torch.stack([per_example_loss(model(s), y, "ce") for s in singles])
        single_wrong = torch.stack([model(s).argmax(1) != y for s in singles])
        best_loss = per_example_loss(model(best), y, "ce")
        best_wrong = model(best).argmax(1) != y
    # an example is misclassified if any restart misclassified it ...
    assert torch.equal(best_wrong, single_wrong.any(0))
    # ... and among correctly classified examples the highest-loss restart is kept
    keep = ~single_wrong.any(0)
    torch.testing.assert_close(best_loss[keep], single_losses.max(0).values[keep])


def test_eps_zero_returns_clean(batch) -> None:
    x, y = batch
    assert torch.equal(pgd(small_cnn(), x, y, eps=0.0, steps=5), x)


def test_fgsm_budget(batch) -> None:
    x, y = batch
    x_adv = fgsm(small_cnn(), x, y, eps=8 / 255)
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6


def test_budget_in_255_units_is_rejected() -> None:
    with pytest.raises(ValueError, match="8/255"):
        PGDAttack(eps=8)


def test_project_l2() -> None:
    delta = torch.ones(2, 1, 2, 2)
    assert torch.allclose(project(delta, 0.5, "l2").flatten(1).norm(dim=1), torch.tensor(0.5))


def test_attack_works_under_autocast(batch) -> None:
    x, y = batch
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_adv = pgd(small_cnn(), x, y, eps=8 / 255, steps=3)
    assert x_adv.dtype == x.dtype
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6
