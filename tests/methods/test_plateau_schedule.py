"""The robustness library's plateau rule (the transfer study's fine-tuning schedule): decays and
the stop on scripted validation curves, on its own and inside a Lightning fit whose per-step
LambdaLR recomputes the learning rate from its base_lrs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch import Trainer

from lit_robust.errors import ConfigurationError
from lit_robust.methods import AdversarialTraining, StandardTraining
from lit_robust.methods.plateau_schedule import PlateauSchedule


def _fake_trainer(lr: float = 0.01) -> SimpleNamespace:
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return SimpleNamespace(optimizers=[optimizer], should_stop=False,
                           lr_scheduler_configs=[SimpleNamespace(scheduler=scheduler)])


def _run(curve: list[float], **kwargs) -> tuple[list[float], int | None]:
    """The learning rate for each epoch after the one validated, and the epoch that stopped."""
    rule, trainer = PlateauSchedule(**kwargs), _fake_trainer()
    lrs = []
    for epoch, value in enumerate(curve):
        rule.step(value, trainer)
        lrs.append(trainer.optimizers[0].param_groups[0]["lr"])
        if trainer.should_stop:
            return lrs, epoch
    return lrs, None


def test_official_rule_on_a_curve_that_peaks_then_stays_flat() -> None:
    """Best 1.0 at epoch 9, then 0.5: the 30 epochs 10..39 below the best decay after epoch
    39, the next 30 after epoch 69, and the third plateau stops after epoch 99 (the official
    loop's ``while lr_update < 3``, hand-counted)."""
    curve = [0.1 * (k + 1) for k in range(10)] + [0.5] * 200
    lrs, stopped = _run(curve)
    assert stopped == 99
    assert lrs[:39] == pytest.approx([0.01] * 39)
    assert lrs[39:69] == pytest.approx([0.001] * 30)
    assert lrs[69:] == pytest.approx([0.0001] * 31)


def test_reaching_the_best_again_resets_the_count() -> None:
    """A value equal to the best is not below it (the official strict comparison): epoch 25
    restarts the count, so the first decay comes after epoch 55; a new best after the decay
    (epoch 70) restarts it again: the second decay after epoch 100, the stop after 130."""
    curve = [1.0] + [0.5] * 24 + [1.0] + [0.5] * 44 + [2.0] + [0.5] * 200
    lrs, stopped = _run(curve)
    assert lrs[54] == pytest.approx(0.01) and lrs[55] == pytest.approx(0.001)
    assert lrs[99] == pytest.approx(0.001) and lrs[100] == pytest.approx(0.0001)
    assert stopped == 130


def test_decay_scales_the_schedulers_base_lrs_and_the_state_round_trips() -> None:
    rule, trainer = PlateauSchedule(patience=2), _fake_trainer(lr=0.5)
    for value in (1.0, 0.0, 0.0):
        rule.step(value, trainer)
    assert trainer.lr_scheduler_configs[0].scheduler.base_lrs == pytest.approx([0.05])
    assert rule.state_dict() == {"best": 1.0, "wait": 0, "decayed": 1}
    restored = PlateauSchedule(patience=2)
    restored.load_state_dict(rule.state_dict())
    assert (restored.best, restored.wait, restored.decayed) == (1.0, 0, 1)


class _Scripted(StandardTraining):
    """Standard training whose validation logs a scripted val/acc per epoch."""

    curve: list[float] = []

    def validation_step(self, batch, batch_idx) -> None:
        self.log("val/acc", self.curve[self.current_epoch])


def _loaders():
    data = torch.utils.data.TensorDataset(torch.rand(8, 3, 8, 8), torch.arange(8) % 4)
    return (torch.utils.data.DataLoader(data, batch_size=4),
            torch.utils.data.DataLoader(data, batch_size=8))


def test_in_a_fit_the_decay_survives_the_per_step_schedule_and_training_stops() -> None:
    """patience 2, 2 decays, 2 steps per epoch: epochs 0-2 at lr 0.1, 3-4 at 0.01, 5-6 at
    0.001, stop after epoch 6 (a decay of the optimizer's lr alone would be undone by the
    base's LambdaLR at the next step)."""
    torch.manual_seed(0)
    method = _Scripted(backbone="tiny_cnn", backbone_kwargs={"width": 4}, num_classes=4,
                       mean=[0.0] * 3, std=[1.0] * 3, lr=0.1, schedule="constant",
                       evaluators=[])
    method.curve = [0.5, 0.4, 0.4, 0.3, 0.3, 0.3, 0.3] + [0.3] * 10
    seen: list[float] = []
    method.on_before_optimizer_step = lambda optimizer: seen.append(
        optimizer.param_groups[0]["lr"])
    trainer = Trainer(max_epochs=20, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      inference_mode=False, accelerator="cpu", num_sanity_val_steps=0,
                      callbacks=[PlateauSchedule(patience=2)])
    trainer.fit(method, *_loaders())
    assert trainer.current_epoch == 7  # epochs 0..6 ran
    assert seen == pytest.approx([0.1] * 6 + [0.01] * 4 + [0.001] * 4)


def test_monitor_follows_the_method_and_validation_is_required() -> None:
    rule = PlateauSchedule()
    assert rule.monitored(AdversarialTraining(backbone="tiny_cnn")) == "val/robust_acc"
    assert rule.monitored(StandardTraining(backbone="tiny_cnn")) == "val/acc"
    assert PlateauSchedule(monitor="val/noisy_acc").monitored(
        StandardTraining(backbone="tiny_cnn")) == "val/noisy_acc"
    method = StandardTraining(backbone="tiny_cnn", backbone_kwargs={"width": 4}, num_classes=4,
                              mean=[0.0] * 3, std=[1.0] * 3)
    trainer = Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      inference_mode=False, accelerator="cpu", callbacks=[PlateauSchedule()])
    with pytest.raises(ConfigurationError, match="no validation batches; set "
                                                 "data.init_args.val_size > 0"):
        trainer.fit(method, _loaders()[0])
    with pytest.raises(ValueError, match="patience >= 1"):
        PlateauSchedule(patience=0)
