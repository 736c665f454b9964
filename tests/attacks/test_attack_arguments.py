"""Every attack argument reaches the attack, and bad ones fail early with a useful message."""

from __future__ import annotations

import importlib

import pytest
import torch
from torch import Tensor

from lit_robust.attacks import PGDAttack, fgsm, per_example_loss, pgd
from tests.attacks.test_pgd import Linear2, RecordingCNN, small_cnn

pgd_module = importlib.import_module("lit_robust.attacks.pgd")




def _batch(n: int = 4) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(5)
    return torch.rand(n, 3, 8, 8, generator=g) * 0.5 + 0.25, torch.randint(0, 10, (n,), generator=g)


def test_pgd_defaults_are_ten_steps_one_run_and_a_random_start() -> None:
    model = RecordingCNN()
    x, y = _batch()
    pgd(model, x, y)
    assert len(model.inputs) == 10
    assert not torch.equal(model.inputs[0], x)
    model.inputs.clear()
    pgd(model, x, y, steps=2, restarts=3)
    assert len(model.inputs) == 3 * (2 + 1)


def test_no_random_start_starts_at_x() -> None:
    model = RecordingCNN()
    x, y = _batch()
    assert torch.equal(pgd(model, x, y, steps=0, random_start=False), x)
    pgd(model, x, y, steps=1, random_start=False)
    assert torch.equal(model.inputs[0], x)


def test_attack_object_forwards_every_setting() -> None:
    x, y = _batch()
    model = RecordingCNN()
    PGDAttack(steps=2, restarts=3)(model, x, y)
    assert len(model.inputs) == 9
    # the KL objective first predicts on x (its target); no random start: the first step at x
    model.inputs.clear()
    PGDAttack(loss="kl", steps=2, random_start=False)(model, x, y)
    assert len(model.inputs) == 3
    assert torch.equal(model.inputs[0], x) and torch.equal(model.inputs[1], x)
    # a given step size is used (one L2 step from x has exactly that length)
    w = torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(0))
    xl = torch.full((2, 1, 8, 8), 0.5)
    step = PGDAttack(eps=1.0, norm="l2", step_size=0.05, steps=1, random_start=False)
    delta = (step(Linear2(w), xl, torch.zeros(2).long()) - xl).flatten(1).norm(dim=1)
    torch.testing.assert_close(delta, torch.full((2,), 0.05))


def test_one_l2_step_has_the_step_length_whatever_the_gradient_scale() -> None:
    w = 30 * torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(1))
    x = torch.full((3, 1, 8, 8), 0.5)
    model = Linear2(w, b=-float(0.5 * w.sum()))  # logit 0 at x: the gradient does not vanish
    x_adv = pgd(model, x, torch.zeros(3).long(), eps=1.0, step_size=0.1, steps=1,
                norm="l2", random_start=False)
    torch.testing.assert_close((x_adv - x).flatten(1).norm(dim=1), torch.full((3,), 0.1))


def test_normal_start_is_not_projected_onto_an_l2_ball_for_linf() -> None:
    torch.manual_seed(0)
    x = torch.full((8, 3, 32, 32), 0.5)
    delta = pgd_module.random_init(x, 8 / 255, "linf", start="normal")
    assert delta.std().item() == pytest.approx(0.001, rel=0.03)  # L2 norm ≈ 0.055 > 8/255


def test_fgsm_takes_one_step_of_one_and_a_quarter_eps_from_a_random_start() -> None:
    # From a uniform start in [-ε, ε], a step of 1.25·ε along sign(w) reaches the face of the
    # cube when the start was at least −0.25·ε along the sign: 62.5% of coordinates end at ±ε.
    torch.manual_seed(0)
    w = torch.randn(1, 3, 16, 16)
    x = torch.full((64, 3, 16, 16), 0.5)
    delta = fgsm(Linear2(w), x, torch.zeros(64).long(), eps=0.1) - x
    assert delta.abs().max() <= 0.1 + 1e-6
    at_face = ((delta * w.sign()) > 0.1 - 1e-6).float().mean().item()
    assert at_face == pytest.approx(0.625, abs=0.01)
    exact = fgsm(Linear2(w), x[:2], torch.zeros(2).long(), eps=0.1, random_start=False) - x[:2]
    torch.testing.assert_close(exact, 0.1 * w.sign().expand_as(exact), atol=1e-6, rtol=0)


def _probability_model(x: Tensor) -> Tensor:
    return x.flatten(1).clamp_min(1e-6).log()


def _runs(*rows: list[list[float]]) -> list[Tensor]:
    return [torch.tensor(r).view(len(r), 3, 1, 1) for r in rows]


CORRECT_HIGH, CORRECT_MID, WRONG_LOW = [0.34, 0.33, 0.33], [0.4, 0.3, 0.3], [0.45, 0.55, 0.0]


def test_restart_selection_is_per_example(monkeypatch: pytest.MonkeyPatch) -> None:
    runs = _runs([CORRECT_HIGH, WRONG_LOW], [WRONG_LOW, CORRECT_HIGH])
    outputs = iter(runs)
    monkeypatch.setattr(pgd_module, "_single_run", lambda *args: next(outputs))
    best = pgd(_probability_model, torch.full((2, 3, 1, 1), 1 / 3), torch.zeros(2).long(),
               eps=0.5, restarts=2)
    assert torch.equal(best, _runs([WRONG_LOW, WRONG_LOW])[0])


def test_a_broken_example_stays_broken_over_later_restarts(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = _runs([WRONG_LOW], [CORRECT_HIGH], [CORRECT_MID])
    outputs = iter(runs)
    monkeypatch.setattr(pgd_module, "_single_run", lambda *args: next(outputs))
    best = pgd(_probability_model, torch.full((1, 3, 1, 1), 1 / 3), torch.zeros(1).long(),
               eps=0.5, restarts=3)
    assert torch.equal(best, runs[0])


def test_kl_objective_is_per_example_against_hand_computation() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    p = torch.tensor([[0.7, 0.2, 0.1], [0.5, 0.5, 0.0]])
    q = torch.softmax(logits, 1)
    expected = torch.stack([
        sum(p[i, k] * torch.log(p[i, k] / q[i, k]) for k in range(3) if p[i, k] > 0)
        for i in range(2)
    ])
    torch.testing.assert_close(per_example_loss(logits, p, "kl"), expected)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"step_size": -0.1}, "step_size must be >= 0"), ({"eps": -0.1}, "eps must be >= 0"),
     ({"eps": 1.5}, r"1.5/255 = 0.005882"), ({"norm": "l1"}, "norm must be 'linf' or 'l2'"),
     ({"restarts": 0}, "restarts >= 1"), ({"steps": -1}, "steps >= 0"),
     ({"steps": 0}, "steps=0 with eps"), ({"step_size": 0.0}, "step_size=0 with eps"),
     ({"eps": 1 / 255, "steps": 0}, "steps=0 with eps")],
)
def test_bad_attack_settings_fail_early(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PGDAttack(**kwargs)


def test_boundary_settings_are_accepted() -> None:
    assert PGDAttack(eps=1.0).eps == 1.0  # the whole [0, 1] box is a valid L-inf budget
    assert PGDAttack(eps=0.0, steps=0).steps == 0  # clean accuracy through the attack path
    assert PGDAttack(eps=0.0, step_size=0.0).step_size == 0.0
    assert PGDAttack(eps=8 / 255, step_size=1.0).step_size == 1.0


def test_function_level_errors_name_the_problem() -> None:
    x, y = _batch(2)
    with pytest.raises(ValueError, match="restarts must be >= 1"):
        pgd(small_cnn(), x, y, restarts=0)
    with pytest.raises(ValueError, match="unknown attack loss 'mse'"):
        per_example_loss(torch.zeros(2, 3), y, "mse")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="step_size must be >= 0"):
        pgd(small_cnn(), x, y, step_size=-1.0)


def test_l2_ball_start_works_for_a_single_image() -> None:
    torch.manual_seed(0)
    delta = pgd_module.random_init(torch.full((1, 3, 32, 32), 0.5), 0.5, "l2")
    assert delta.flatten(1).norm(dim=1).item() > 0.49  # ε·U^(1/3072) is close to ε


def test_linf_step_leaves_pixels_without_gradient_in_place() -> None:
    w = torch.randn(1, 4, 4, generator=torch.Generator().manual_seed(2))
    w[0, 0, 0] = 0.0  # the logit does not depend on this pixel
    x = torch.full((2, 1, 4, 4), 0.5)
    x_adv = pgd(Linear2(w), x, torch.zeros(2).long(), eps=0.1, step_size=0.05, steps=1,
                random_start=False)
    assert torch.equal(x_adv[:, 0, 0, 0], x[:, 0, 0, 0])
    torch.testing.assert_close((x_adv - x).abs()[:, 0, 1:, :], torch.full((2, 3, 4), 0.05))


def test_a_given_kl_target_replaces_the_clean_prediction() -> None:
    model = RecordingCNN()
    x, y = _batch()
    target = torch.full((4, 10), 0.1)
    PGDAttack(loss="kl", steps=2)(model, x, y, target=target)
    assert len(model.inputs) == 2  # no extra pass on x to compute the target
