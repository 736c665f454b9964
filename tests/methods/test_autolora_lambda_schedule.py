"""AutoLoRa recomputes λ1, λ2 from the natural branch's training accuracy before the first epoch
and after every epoch (Section 4.2 of the paper; the official code measures it each epoch), and
every training step of an epoch uses the values measured before it."""

from __future__ import annotations

import sys

import pytest

from lit_robust.main import cli
from lit_robust.methods.autolora import AutoLoRa, autolora_lambdas
from tests.methods.test_autolora import TINY


def test_every_epoch_trains_with_the_lambdas_of_the_accuracy_measured_before_it(
        tmp_path, monkeypatch) -> None:
    """Scripted accuracies 0.2 (before epoch 0), 0.5 (after it) and 0.8 (after epoch 1):
    epoch 0 trains with λ(0.2), epoch 1 with λ(0.5), and the run ends holding λ(0.8)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])
    accuracies = iter([0.2, 0.5, 0.8])
    monkeypatch.setattr(AutoLoRa, "natural_train_accuracy", lambda self: next(accuracies))
    used: list[tuple[int, float, float]] = []
    original = AutoLoRa.training_loss

    def recording(self: AutoLoRa, x, x_adv, y):
        used.append((self.current_epoch, self.lambda1, self.lambda2))
        return original(self, x, x_adv, y)

    monkeypatch.setattr(AutoLoRa, "training_loss", recording)
    run = cli(["fit", *TINY, "--model.auto_lr", "false", "--trainer.max_epochs", "2",
               "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "0"])
    expected = [(epoch, *autolora_lambdas(accuracy)) for epoch, accuracy in
                [(0, 0.2), (0, 0.2), (1, 0.5), (1, 0.5)]]
    assert used == expected  # the same function of the same accuracy: exactly equal
    assert (run.model.lambda1, run.model.lambda2) == pytest.approx(autolora_lambdas(0.8))
