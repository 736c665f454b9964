"""ε-scheduling: the budget per epoch, the budget every training step's attack really used,
and refusals."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lit_robust.attacks import PGDAttack
from lit_robust.main import cli, main
from lit_robust.methods import AdversarialTraining, StandardTraining
from lit_robust.methods.eps_schedule import epsilon_scale, scaled_budget

REPO = Path(__file__).resolve().parents[2]
TINY = ["--config", str(REPO / "tests/conf/tiny_model.yaml"),
        "--config", str(REPO / "tests/conf/tiny_cifar10.yaml"),
        "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.logger", "false"]


def test_scale_per_epoch_hinge_then_ramp() -> None:
    values = [epsilon_scale(epoch, start_epoch=1, ramp_epochs=4) for epoch in range(7)]
    assert values == [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert epsilon_scale(2.5, 1, 4) == pytest.approx(0.375)  # linear within an epoch
    assert [epsilon_scale(e, 0, 2) for e in (0, 1, 2, 3)] == [0.0, 0.5, 1.0, 1.0]
    assert [epsilon_scale(e, 2, 0) for e in (0, 1.9, 2)] == [0.0, 0.0, 1.0]  # a plain hinge
    assert epsilon_scale(0, 0, 0) == 1.0


def test_scaled_budget_keeps_the_step_ratio_and_restores() -> None:
    attack = PGDAttack(eps=8 / 255, step_size=2 / 255, steps=10)
    with scaled_budget(attack, 0.5):
        assert (attack.eps, attack.step_size) == pytest.approx((4 / 255, 1 / 255))
    assert (attack.eps, attack.step_size) == (8 / 255, 2 / 255)


def test_every_training_step_attacks_with_the_scheduled_budget(tmp_path, monkeypatch) -> None:
    """Three epochs of two batches, clean for the first epoch, then a one-epoch ramp."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])
    used: list[tuple[float, float]] = []
    original = PGDAttack.__call__

    def recording(self, model, x, y, target=None):
        if model.training is False and x.shape[0] == 8:  # training batches (val has 10 images)
            used.append((self.eps, self.step_size))
        return original(self, model, x, y, target)

    monkeypatch.setattr(PGDAttack, "__call__", recording)
    run = cli(["fit", *TINY, "--model.eps_ramp_start_epoch", "1", "--model.eps_ramp_epochs", "1",
               "--trainer.max_epochs", "3", "--trainer.limit_train_batches", "2",
               "--trainer.limit_val_batches", "0"])
    eps, step = run.model.attack.eps, run.model.attack.step_size
    scales = [0.0, 0.0, 0.0, 0.5, 1.0, 1.0]  # progress 0, 0.5, 1, 1.5, 2, 2.5 epochs
    assert [e for e, _ in used] == pytest.approx([eps * s for s in scales])
    assert [s for _, s in used] == pytest.approx([step * s for s in scales])
    assert (eps, step) == (0.031372549, 0.031372549)  # restored after every step


def test_a_method_without_a_training_attack_refuses_a_schedule(tmp_path, monkeypatch,
                                                                capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *TINY, "--model", "StandardTraining", "--model.backbone", "tiny_cnn",
              "--model.eps_ramp_epochs", "2", "--trainer.fast_dev_run", "true"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("lit-robust: error: eps_ramp_start_epoch / eps_ramp_epochs")
    assert "StandardTraining trains without one" in error and "\n" not in error


def test_negative_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        AdversarialTraining(eps_ramp_epochs=-1)
    with pytest.raises(ValueError, match="must be >= 0"):
        StandardTraining(eps_ramp_start_epoch=-0.5)
