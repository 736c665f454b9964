"""Unit checks of the shared method base: restoring, predict / test / validation steps."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import Tensor, nn

from lit_robust.attacks import PGDAttack
from lit_robust.methods import StandardTraining

NORM = dict(num_classes=3, mean=[0.0] * 3, std=[1.0] * 3)


class _Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3 * 4 * 4, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x.flatten(1))


class _CountingAttack(PGDAttack):
    """Returns the clean images and counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, target=None) -> Tensor:
        self.calls += 1
        return x


def _method(**kwargs) -> StandardTraining:
    method = StandardTraining(**NORM, **kwargs)
    method.model = _Linear()
    method._build_metrics(3)
    return method


def _batch(n: int = 4) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, 4, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


@pytest.mark.parametrize("trainer", [None, SimpleNamespace(ckpt_path="last.ckpt",
                                                           datamodule=None)])
def test_missing_pretrained_file_is_only_a_warning_when_a_checkpoint_is_restored(
    trainer, tmp_path: Path
) -> None:
    # No trainer (load_from_checkpoint) or a trainer restoring ckpt_path: the restored
    # checkpoint provides the weights, so the missing pretrained file must not be read.
    method = StandardTraining(backbone="tiny_cnn", backbone_kwargs={"width": 2},
                              pretrained=str(tmp_path / "moved.pt"), **NORM)
    method._trainer = trainer
    with pytest.warns(UserWarning, match="moved.pt"):
        method.configure_model()
    assert method.model is not None


def test_restored_checkpoint_epoch_and_step_are_remembered() -> None:
    method = StandardTraining(**NORM)
    method.on_load_checkpoint({"epoch": 3, "global_step": 120, "state_dict": {}})
    assert method.restored_from == {"epoch": 3, "step": 120}


def test_forward_is_the_model() -> None:
    method = _method()
    x, _ = _batch()
    torch.testing.assert_close(method(x), method.model(x))


@pytest.mark.parametrize("with_labels", [True, False])
def test_predict_step_takes_images_with_or_without_labels(with_labels: bool) -> None:
    method = _method()
    x, y = _batch()
    probabilities = method.predict_step((x, y) if with_labels else x, 0)
    assert probabilities.shape == (4, 3)
    torch.testing.assert_close(probabilities, torch.softmax(method.model(x), dim=1))


def test_test_step_checks_the_pixel_range_of_the_first_batch() -> None:
    method = _method(evaluators=[])
    x, y = _batch()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        method.test_step((x * 255, y), 0)


def test_val_attack_batches_limits_the_attacked_batches() -> None:
    attack = _CountingAttack()
    method = _method(val_attack=attack, val_attack_batches=2)
    with pytest.warns(UserWarning, match="self.log"):
        for batch_idx in range(4):
            method.validation_step(_batch(), batch_idx)
    assert attack.calls == 2


def test_validation_without_attack_is_clean_only() -> None:
    method = _method(val_attack=None)
    with pytest.warns(UserWarning, match="self.log"):
        method.validation_step(_batch(), 0)
    assert method.val_robust_acc.update_count == 0
    assert method.val_metrics["acc"].update_count == 1


def test_validation_accuracies_are_shown_in_the_progress_bar(tmp_path: Path) -> None:
    from lightning.pytorch import Trainer
    from torch.utils.data import DataLoader, TensorDataset

    method = StandardTraining(backbone="tiny_cnn", backbone_kwargs={"width": 2},
                              val_attack=PGDAttack(steps=1), **NORM)
    g = torch.Generator().manual_seed(2)
    data = DataLoader(TensorDataset(torch.rand(6, 3, 8, 8, generator=g),
                                    torch.randint(0, 3, (6,), generator=g)), batch_size=3)
    trainer = Trainer(logger=False, inference_mode=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path)
    trainer.validate(method, data, verbose=False)
    assert {"val/acc", "val/robust_acc"} <= set(trainer.progress_bar_metrics)


def _schedule(method: StandardTraining, max_epochs: int | None, steps: int) -> tuple:
    method._trainer = SimpleNamespace(max_epochs=max_epochs, estimated_stepping_batches=steps)
    config = method.configure_optimizers()
    return config["optimizer"], config["lr_scheduler"]["scheduler"].lr_lambdas[0]


def test_default_milestones_are_fractions_of_a_one_epoch_run() -> None:
    _, factor = _schedule(_method(gamma=0.1), max_epochs=1, steps=10)
    assert [factor(s) for s in (0, 4, 5, 7, 8)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])


def test_one_step_per_epoch_decays_at_the_milestone_step() -> None:
    _, factor = _schedule(_method(milestones=[1, 2], gamma=0.1), max_epochs=3, steps=3)
    assert [factor(s) for s in (0, 1, 2)] == pytest.approx([1, 0.1, 0.01])


@pytest.mark.parametrize("max_epochs", [None, -1])
def test_step_limited_runs_lay_the_schedule_over_all_steps(max_epochs) -> None:
    # Without an epoch limit (Trainer(max_steps=...)) the whole run counts as one epoch.
    _, cosine = _schedule(_method(schedule="cosine"), max_epochs, steps=100)
    assert [cosine(s) for s in (0, 50, 100)] == pytest.approx([1, 0.5, 0], abs=1e-12)
    _, warm = _schedule(_method(schedule="constant", warmup_epochs=0.5), max_epochs, steps=100)
    assert [warm(s) for s in (25, 50, 99)] == pytest.approx([0.5, 1, 1], abs=1e-6)


def test_nesterov_reaches_the_optimizer() -> None:
    optimizer, _ = _schedule(_method(nesterov=True), max_epochs=1, steps=4)
    assert optimizer.param_groups[0]["nesterov"] is True


def test_no_trainable_parameter_fails_but_one_is_enough() -> None:
    method = _method()
    method.model.fc.weight.requires_grad_(False)
    optimizer, _ = _schedule(method, max_epochs=1, steps=4)
    assert [p for group in optimizer.param_groups for p in group["params"]] == [
        method.model.fc.bias]
    method.model.fc.bias.requires_grad_(False)
    with pytest.raises(ValueError, match="StandardTraining.*trainable"):
        method.configure_optimizers()


def test_training_checks_the_pixel_range_of_the_first_batch() -> None:
    method = _method()
    x, y = _batch()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        method.training_step((x * 255, y), 0)


def test_non_finite_loss_error_says_where_training_stopped() -> None:
    from lit_robust.errors import NonFiniteLossError

    method = _method()
    method._trainer = SimpleNamespace(current_epoch=2, global_step=40)
    x, y = _batch()
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError) as error:
        method.training_step((x, y), 3)
    for where in ("epoch 2", "step 40", "batch 3"):
        assert where in str(error.value)


@pytest.mark.parametrize(("low", "high", "ok"), [(0.0, 1.0, True), (-0.5, 0.5, False),
                                                 (0.5, 1.5, False), (-2.0, 3.0, False)])
def test_pixel_range_check_catches_either_end(low: float, high: float, ok: bool) -> None:
    from lit_robust.methods.base import check_pixel_range

    x = torch.tensor([low, high]).view(1, 2, 1, 1)
    if ok:
        check_pixel_range(x)
    else:
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            check_pixel_range(x)


def test_default_test_evaluators_use_the_validation_attack_budget() -> None:
    from lit_robust.evaluation import CleanAccuracy

    for steps, expected_steps in ((5, 10), (20, 20)):
        method = StandardTraining(val_attack=PGDAttack(eps=0.5, step_size=0.1, steps=steps,
                                                       norm="l2"), **NORM)
        clean, pgd = method.default_evaluators()
        assert isinstance(clean, CleanAccuracy)
        (attack,) = pgd.attacks
        assert (attack.eps, attack.step_size, attack.steps, attack.norm, attack.restarts) == (
            0.5, 0.1, expected_steps, "l2", 3)


def test_training_logs_loss_per_step_and_epoch_and_accuracy_per_epoch(tmp_path: Path) -> None:
    from lightning.pytorch import Trainer
    from torch.utils.data import DataLoader, TensorDataset

    method = StandardTraining(backbone="tiny_cnn", backbone_kwargs={"width": 2}, **NORM)
    g = torch.Generator().manual_seed(3)
    data = DataLoader(TensorDataset(torch.rand(6, 3, 8, 8, generator=g),
                                    torch.randint(0, 3, (6,), generator=g)), batch_size=3)
    trainer = Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=tmp_path)
    trainer.fit(method, data)
    logged = set(trainer.callback_metrics)
    assert {"train/loss_step", "train/loss_epoch", "train/acc", "train/lr"} <= logged
    assert "train/acc_step" not in logged
    assert "train/loss_step" in trainer.progress_bar_metrics


class _Data:
    """A data module that knows its classes and normalization (mean as a tensor)."""

    num_classes = 5
    mean = torch.tensor([0.25, 0.5, 0.75])
    std = (0.2, 0.2, 0.2)


class _BareData:
    """A data module that defines none of num_classes, mean and std."""


def _configured(datamodule, **kwargs) -> StandardTraining:
    method = StandardTraining(backbone="tiny_cnn", backbone_kwargs={"width": 2}, **kwargs)
    method._trainer = SimpleNamespace(datamodule=datamodule, ckpt_path=None)
    method.configure_model()
    return method


def test_values_taken_from_the_data_are_stored_as_plain_hyperparameters() -> None:
    method = _configured(_Data())
    assert method.hparams["num_classes"] == 5
    assert method.hparams["mean"] == [0.25, 0.5, 0.75]
    assert method.hparams["std"] == [0.2, 0.2, 0.2]
    assert all(type(v) is float for v in method.hparams["mean"] + method.hparams["std"])


def test_a_data_module_without_those_attributes_falls_back_to_the_model_arguments() -> None:
    method = _configured(_BareData(), **NORM)
    assert method.hparams["num_classes"] == 3
    assert method.model(torch.rand(2, 3, 8, 8)).shape == (2, 3)


def test_unknown_or_contradicting_num_classes_is_reported() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        _configured(_BareData(), mean=[0.0] * 3, std=[1.0] * 3)
    with pytest.raises(ValueError, match="_Data"):
        _configured(_Data(), num_classes=7)


def test_backbone_kwargs_and_channels_last_shape_the_model() -> None:
    def conv_weights(method: StandardTraining) -> list[Tensor]:
        return [p for p in method.model.parameters() if p.dim() == 4]

    narrow = _configured(None, **NORM)
    wide = StandardTraining(backbone="tiny_cnn", backbone_kwargs={"width": 4}, **NORM)
    wide.configure_model()
    assert sum(p.numel() for p in wide.model.parameters()) > sum(
        p.numel() for p in narrow.model.parameters())
    assert not conv_weights(narrow)[0].is_contiguous(memory_format=torch.channels_last)
    fast = _configured(None, channels_last=True, **NORM)
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in conv_weights(fast))


def _shard_mask(rank: int, size: int, batch_size: int, batch_idx: int, count: int,
                drop_last: bool = False, wrap: bool = True) -> list[bool]:
    from torch.utils.data import DataLoader, TensorDataset
    from torch.utils.data.distributed import DistributedSampler

    data = TensorDataset(torch.rand(size, 3, 4, 4), torch.zeros(size, dtype=torch.long))
    sampler = DistributedSampler(data, num_replicas=2, rank=rank, shuffle=False,
                                 drop_last=drop_last)
    loader = DataLoader(data, batch_size=batch_size, sampler=sampler)
    method = _method()
    method._trainer = SimpleNamespace(val_dataloaders=[loader] if wrap else loader)
    return method.real_validation_images(batch_idx, count).tolist()


def test_ddp_padding_copies_are_not_validation_images() -> None:
    # 3 images on 2 processes are padded to 4: process 1 gets image 1 and a copy of image 0.
    assert _shard_mask(rank=1, size=3, batch_size=2, batch_idx=0, count=2) == [True, False]
    assert _shard_mask(rank=1, size=3, batch_size=2, batch_idx=0, count=2,
                       wrap=False) == [True, False]
    assert _shard_mask(rank=0, size=3, batch_size=2, batch_idx=0, count=2) == [True, True]
    # 7 images: process 1 gets images 1, 3, 5 and a copy of image 0 (its second batch of 3).
    assert _shard_mask(rank=1, size=7, batch_size=3, batch_idx=0, count=3) == [True] * 3
    assert _shard_mask(rank=1, size=7, batch_size=3, batch_idx=1, count=1) == [False]
    # drop_last drops the tail instead of padding.
    assert _shard_mask(rank=1, size=3, batch_size=2, batch_idx=0, count=1,
                       drop_last=True) == [True]


def test_validation_accuracy_of_a_padded_shard_counts_each_image_once(tmp_path: Path) -> None:
    from lightning.pytorch import Trainer
    from torch.utils.data import DataLoader, TensorDataset
    from torch.utils.data.distributed import DistributedSampler

    x = torch.rand(3, 3, 4, 4, generator=torch.Generator().manual_seed(4))
    method = _method(val_attack=_CountingAttack())
    with torch.no_grad():
        predicted = method.model(x).argmax(dim=1)
    y = predicted.clone()
    y[0] = (predicted[0] + 1) % 3  # image 0 (the padding copy on process 1) is wrong
    data = TensorDataset(x, y)
    sampler = DistributedSampler(data, num_replicas=2, rank=1, shuffle=False)
    trainer = Trainer(logger=False, inference_mode=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path)
    trainer.validate(method, DataLoader(data, batch_size=2, sampler=sampler), verbose=False)
    # process 1 validates image 1 only (correct); the copy of image 0 must not count
    assert trainer.callback_metrics["val/acc"].item() == pytest.approx(1.0)
    assert trainer.callback_metrics["val/robust_acc"].item() == pytest.approx(1.0)
