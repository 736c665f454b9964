"""LARS: one and two steps against a hand computation, the tensors it neither decays nor
adapts, and its use from a method's ``optimizer`` option."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from lit_robust.main import cli
from lit_robust.methods import SimCLR, StandardTraining
from lit_robust.methods.optim import LARS, build_optimizer


def tiny_parameters() -> tuple[torch.nn.Parameter, torch.nn.Parameter]:
    """A 2×2 weight (‖w‖ = 5) with gradient [[0, 1], [1, 0]] and a bias [1, -1] with
    gradient [0.5, 0.5]."""
    weight = torch.nn.Parameter(torch.tensor([[3.0, 0.0], [0.0, 4.0]]))
    bias = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    weight.grad = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    bias.grad = torch.tensor([0.5, 0.5])
    return weight, bias


def test_one_step_matches_a_hand_computation() -> None:
    weight, bias = tiny_parameters()
    lr, wd, eta = 0.5, 0.1, 0.01
    LARS([weight, bias], lr=lr, momentum=0.9, weight_decay=wd, trust_coefficient=eta).step()
    # u = g + wd·w = [[0.3, 1], [1, 0.4]]; ‖u‖ = √(0.09 + 1 + 1 + 0.16) = 1.5; ‖w‖ = 5
    ratio = eta * 5.0 / 1.5
    expected = torch.tensor([[3.0, 0.0], [0.0, 4.0]]) - lr * ratio * torch.tensor(
        [[0.3, 1.0], [1.0, 0.4]])
    torch.testing.assert_close(weight.detach(), expected)
    # the bias: no weight decay, no trust ratio, plain lr·g
    torch.testing.assert_close(bias.detach(), torch.tensor([0.75, -1.25]))


def test_momentum_accumulates_the_scaled_steps() -> None:
    weight, bias = tiny_parameters()
    lr, mu = 0.5, 0.9
    optimizer = LARS([weight, bias], lr=lr, momentum=mu, weight_decay=0.0,
                     trust_coefficient=0.02)
    optimizer.step()
    first = weight.detach().clone()
    first_step = lr * 0.02 * 5.0 / math.sqrt(2) * torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    torch.testing.assert_close(first, torch.tensor([[3.0, 0.0], [0.0, 4.0]]) - first_step)
    optimizer.step()  # same gradient; ‖w‖ has changed
    norm = torch.linalg.vector_norm(first)
    second_step = lr * 0.02 * norm / math.sqrt(2) * torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    torch.testing.assert_close(weight.detach(), first - (mu * first_step + second_step))
    torch.testing.assert_close(bias.detach(), torch.tensor([1.0, -1.0]) - 0.25 * (1 + mu + 1))


def test_nesterov_and_zero_norms() -> None:
    weight, _ = tiny_parameters()
    zero = torch.nn.Parameter(torch.zeros(2, 2))
    zero.grad = torch.ones(2, 2)
    LARS([weight, zero], lr=0.5, momentum=0.9, nesterov=True, weight_decay=0.0,
         trust_coefficient=0.02).step()
    step = 0.5 * 0.02 * 5.0 / math.sqrt(2) * torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    torch.testing.assert_close(weight.detach(), torch.tensor([[3.0, 0.0], [0.0, 4.0]]) - 1.9 * step)
    torch.testing.assert_close(zero.detach(), -1.9 * 0.5 * torch.ones(2, 2))  # ‖w‖ = 0: ratio 1


@pytest.mark.parametrize("bad", [dict(lr=0.0), dict(lr=0.1, trust_coefficient=0.0),
                                 dict(lr=0.1, momentum=0.0, nesterov=True)])
def test_bad_arguments_fail_early(bad: dict) -> None:
    with pytest.raises(ValueError, match="LARS"):
        LARS([torch.nn.Parameter(torch.ones(2, 2))], **bad)


def test_the_optimizer_option_builds_lars_for_any_method() -> None:
    assert isinstance(build_optimizer([torch.nn.Parameter(torch.ones(2))], "lars", 0.1, 0.9,
                                      False, 1e-6), LARS)
    common = dict(backbone="tiny_cnn", num_classes=10, mean=[0.5] * 3, std=[0.25] * 3,
                  optimizer="lars")
    for method in (SimCLR(**common), StandardTraining(**common)):
        method.configure_model()
        method.trainer = type("T", (), {"max_epochs": 2, "estimated_stepping_batches": 4})()
        optimizer = method.configure_optimizers()["optimizer"]
        assert isinstance(optimizer, LARS)
        assert optimizer.param_groups[0]["weight_decay"] == method.hparams.weight_decay


def test_the_simclr_source_config_takes_lars(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])
    config = (Path(__file__).resolve().parents[2] / "configs" / "experiments" / "transfer"
              / "self_contained" / "pretrain_simclr.yaml")
    parsed = cli(["--config", str(config), "--model.init_args.optimizer", "lars"],
                 run=False)
    assert parsed.model.hparams.optimizer == "lars"
    with pytest.raises(SystemExit):
        cli(["--config", str(config), "--model.init_args.optimizer", "larz"], run=False)
