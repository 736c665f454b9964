"""PGD's random starts, default step sizes, projection, iterates and restart selection."""

from __future__ import annotations

import importlib
import math

import pytest
import torch
from torch import Tensor

from lit_robust.attacks import PGDAttack, per_example_loss, pgd, project, random_init
from lit_robust.evaluation import PGDEvaluator
from tests.attacks.test_pgd import Linear2, RecordingCNN, small_cnn

pgd_module = importlib.import_module("lit_robust.attacks.pgd")  # the package exports pgd()


def _radii(delta: Tensor) -> Tensor:
    return delta.flatten(1).norm(dim=1)


def test_l2_ball_start_is_uniform_in_volume_in_two_dimensions() -> None:
    # Uniform in a 2-d disc of radius ε: P(r ≤ t) = (t/ε)², so E[r] = 2ε/3 (not ε/2).
    torch.manual_seed(0)
    delta = random_init(torch.full((40_000, 1, 1, 2), 0.5), 0.3, "l2")
    radii = _radii(delta)
    assert radii.max() <= 0.3 + 1e-6
    assert radii.mean().item() == pytest.approx(0.2, abs=0.003)
    assert (radii <= 0.15).float().mean().item() == pytest.approx(0.25, abs=0.01)


def test_l2_ball_start_lies_near_the_sphere_in_image_dimensions() -> None:
    torch.manual_seed(0)
    radii = _radii(random_init(torch.full((256, 3, 32, 32), 0.5), 0.5, "l2"))
    # E[r] = ε·d/(d+1) for d = 3072; the 1% quantile of ε·U^(1/d) is ε·0.01^(1/d) ≈ 0.9985·ε.
    assert radii.mean().item() == pytest.approx(0.5 * 3072 / 3073, abs=1e-3)
    assert radii.min().item() > 0.49


def test_l2_sphere_start_has_radius_eps_and_uniform_direction() -> None:
    torch.manual_seed(0)
    delta = random_init(torch.full((2000, 1, 4, 4), 0.5), 0.2, "l2", start="sphere")
    torch.testing.assert_close(_radii(delta), torch.full((2000,), 0.2), atol=1e-5, rtol=0)
    mean_direction = (delta.flatten(1) / 0.2).mean(0)
    assert mean_direction.abs().max() < 0.05


def test_normal_start_is_trades_gaussian() -> None:
    torch.manual_seed(0)
    delta = random_init(torch.full((64, 3, 8, 8), 0.5), 8 / 255, "linf", start="normal")
    assert delta.std().item() == pytest.approx(0.001, rel=0.03)
    assert delta.mean().abs().item() < 1e-4


def test_linf_ball_start_is_uniform_in_the_cube() -> None:
    torch.manual_seed(0)
    delta = random_init(torch.full((64, 3, 8, 8), 0.5), 0.1, "linf")
    assert delta.abs().max() <= 0.1
    # Uniform on [-ε, ε]: standard deviation ε/√3.
    assert delta.std().item() == pytest.approx(0.1 / math.sqrt(3), rel=0.02)


def test_unknown_or_mismatched_start_is_rejected_early() -> None:
    with pytest.raises(ValueError, match="L2 start"):
        PGDAttack(start="sphere")
    with pytest.raises(ValueError, match="'ball', 'sphere' or 'normal'"):
        PGDAttack(norm="l2", eps=0.5, start="cube")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "norm,eps,steps,expected",
    [("linf", 8 / 255, 10, 2 / 255), ("l2", 0.5, 10, 0.125), ("l2", 0.5, 3, 2.5 * 0.5 / 3),
     ("linf", 4 / 255, 20, 0.5 / 255)],
)
def test_default_step_size_scales_with_norm_and_budget(
    norm: str, eps: float, steps: int, expected: float
) -> None:
    assert PGDAttack(eps=eps, steps=steps, norm=norm).step_size == pytest.approx(expected)
    evaluator = PGDEvaluator(eps=eps, steps=steps, norm=norm)
    assert evaluator.attacks[0].step_size == pytest.approx(expected)


def test_default_step_size_counts_zero_steps_as_one() -> None:
    assert pgd_module.default_step_size(0.5, 0) == pytest.approx(1.25)


def test_evaluator_default_step_size_follows_each_budget_of_a_sweep() -> None:
    evaluator = PGDEvaluator(eps_list=[0.25, 0.5], steps=10, norm="l2")
    assert [a.step_size for a in evaluator.attacks] == pytest.approx([0.0625, 0.125])
    assert PGDAttack(eps=0.5, norm="l2", step_size=0.3).step_size == 0.3


def test_default_l2_attack_reaches_the_sphere() -> None:
    # A linear model's L2 optimum is ε·w/‖w‖; with the default step PGD-10 gets there.
    torch.manual_seed(0)
    w = torch.randn(1, 8, 8)
    x = torch.full((2, 1, 8, 8), 0.5)
    y = torch.zeros(2, dtype=torch.long)
    x_adv = PGDAttack(eps=0.5, norm="l2", random_start=False)(Linear2(w), x, y)
    torch.testing.assert_close(_radii(x_adv - x), torch.full((2,), 0.5), atol=1e-4, rtol=0)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_projection_leaves_points_inside_the_ball_unchanged(norm: str) -> None:
    torch.manual_seed(0)
    delta = torch.randn(4, 3, 5, 5)
    eps = 1.01 * (_radii(delta).max().item() if norm == "l2" else delta.abs().max().item())
    assert torch.equal(project(delta, eps, norm), delta)


def test_l2_projection_scales_points_outside_onto_the_sphere() -> None:
    delta = torch.tensor([[3.0, 4.0], [0.3, 0.4]]).view(2, 1, 1, 2)
    projected = project(delta, 1.0, "l2").flatten(1)
    torch.testing.assert_close(projected, torch.tensor([[0.6, 0.8], [0.3, 0.4]]))


@pytest.mark.parametrize("norm,eps,start", [("linf", 8 / 255, "ball"), ("l2", 0.5, "ball"),
                                            ("l2", 0.5, "sphere"), ("linf", 8 / 255, "normal")])
def test_every_iterate_the_model_sees_is_in_the_box_and_the_ball(
    norm: str, eps: float, start: str
) -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.rand(8, 3, 8, 8, generator=g)  # pixels near 0 and 1 exercise the box clipping
    y = torch.randint(0, 10, (8,), generator=g)
    model = small_cnn()
    seen: list[Tensor] = []
    model.register_forward_pre_hook(lambda _, inputs: seen.append(inputs[0].detach().clone()))
    pgd(model, x, y, eps=eps, step_size=eps, steps=4, norm=norm, restarts=2, start=start)
    assert len(seen) == 2 * (4 + 1)  # 4 steps and one selection pass per restart
    for seen_x in seen:
        assert seen_x.min() >= 0 and seen_x.max() <= 1
        delta = (seen_x - x).flatten(1)
        size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
        assert size.max() <= eps + 1e-5


def _probability_model(x: Tensor) -> Tensor:
    """Logits log(x): an input is the probability vector the model outputs."""
    return x.flatten(1).clamp_min(1e-6).log()


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_a_misclassifying_restart_beats_a_correct_one_with_higher_loss(
    monkeypatch: pytest.MonkeyPatch, order: tuple[int, int]
) -> None:
    correct_high_loss = torch.tensor([0.34, 0.33, 0.33])  # y = 0 still wins, CE = 1.08
    wrong_low_loss = torch.tensor([0.45, 0.55, 0.0])  # class 1 wins, CE = 0.80
    runs = [correct_high_loss.view(1, 3, 1, 1), wrong_low_loss.view(1, 3, 1, 1)]
    y = torch.zeros(1, dtype=torch.long)
    losses = [per_example_loss(_probability_model(r), y, "ce").item() for r in runs]
    assert losses[0] > losses[1]
    outputs = iter([runs[i] for i in order])
    monkeypatch.setattr(pgd_module, "_single_run", lambda *args: next(outputs))
    best = pgd(_probability_model, torch.full((1, 3, 1, 1), 1 / 3), y, eps=0.5, restarts=2)
    assert torch.equal(best, runs[1])


def test_among_correct_restarts_the_higher_loss_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    low = torch.tensor([0.6, 0.2, 0.2]).view(1, 3, 1, 1)
    high = torch.tensor([0.4, 0.3, 0.3]).view(1, 3, 1, 1)
    middle = torch.tensor([0.5, 0.25, 0.25]).view(1, 3, 1, 1)
    outputs = iter([low, high, middle])
    monkeypatch.setattr(pgd_module, "_single_run", lambda *args: next(outputs))
    best = pgd(_probability_model, torch.full((1, 3, 1, 1), 1 / 3), torch.zeros(1).long(),
               eps=0.5, restarts=3)
    assert torch.equal(best, high)


def test_kl_attack_increases_the_kl_over_its_random_start() -> None:
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(16, 3, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)
    model = small_cnn()
    with torch.no_grad():
        p = torch.softmax(model(x), 1)
    results = []
    for steps in (0, 5):
        torch.manual_seed(4)  # the same random start for both
        x_adv = pgd(model, x, y, eps=8 / 255, steps=steps, loss="kl", start="normal")
        with torch.no_grad():
            results.append(per_example_loss(model(x_adv), p, "kl"))
    start_kl, attacked_kl = results
    assert (attacked_kl > start_kl).all()
    assert attacked_kl.mean() > 100 * start_kl.mean()




def test_attack_object_passes_its_start_to_pgd() -> None:
    model = RecordingCNN()
    x = torch.full((4, 3, 8, 8), 0.5)
    PGDAttack(eps=0.5, norm="l2", steps=1, start="sphere")(model, x, torch.zeros(4).long())
    torch.testing.assert_close(_radii(model.inputs[0] - x), torch.full((4,), 0.5), atol=1e-5,
                               rtol=0)
