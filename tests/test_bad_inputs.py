"""Bad inputs get a clear, early error (or a loud warning) that says what is wrong."""

from __future__ import annotations

import json
import os
import pickle
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from lit_robust.attacks import PGDAttack
from lit_robust.data import CIFAR10DataModule
from lit_robust.data.cifar import load_cifar_batch
from lit_robust.data.datasets import ImageDataset
from lit_robust.data.images import DataFileError, ImageSplit, read_image
from lit_robust.data.transforms import KeepSize, to_float
from lit_robust.errors import NonFiniteLossError
from lit_robust.evaluation import PGDEvaluator
from lit_robust.evaluation.report import RobustnessReport
from lit_robust.evaluation.sanity import SanityCheckWarning
from lit_robust.main import main
from lit_robust.methods import TWINS, StandardTraining
from lit_robust.models.checkpoint import CheckpointReadError, load_weights
from lit_robust.models.zoo import build_backbone

REPO = Path(__file__).resolve().parents[1]
TINY = ["--config", str(REPO / "tests/conf/tiny_model.yaml"),
        "--config", str(REPO / "tests/conf/tiny_cifar10.yaml"),
        "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"]


# ------------------------------------------------------------------ attacks that cannot move
@pytest.mark.parametrize("kwargs, message", [
    ({"step_size": 0.0}, "step_size=0"),
    ({"steps": 0}, "steps=0"),
    ({"steps": 0, "random_start": False}, "steps=0"),
])
def test_attacks_and_evaluators_that_never_move_the_input_are_refused(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        PGDAttack(eps=8 / 255, **kwargs)
    with pytest.raises(ValueError, match=message):
        PGDEvaluator(eps=8 / 255, **kwargs)


def test_a_zero_budget_may_take_no_step() -> None:
    assert PGDAttack(eps=0.0, steps=0).steps == 0


def test_a_training_attack_that_never_moves_is_a_one_line_cli_error(tmp_path, capsys,
                                                                     monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *TINY, "--model.init_args.attack.init_args.step_size", "0"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("lit-robust: error: step_size=0 with eps=0.0313725 never moves")
    assert "\n" not in error


def test_an_invalid_setting_is_one_short_line_not_a_traceback(tmp_path, capsys,
                                                              monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["fit", *TINY, "--model.init_args.lr", "-1"])
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    assert error.startswith("lit-robust: error: need lr > 0")


# ------------------------------------------------------------------ data files
def test_a_corrupt_image_file_is_named_when_the_dataset_is_set_up(tmp_path) -> None:
    good, bad = tmp_path / "good.png", tmp_path / "broken.jpg"
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(good)
    bad.write_bytes(b"\xff\xd8\xff this is not a JPEG")
    assert read_image(good).shape == (3, 8, 8)
    split = ImageSplit(torch.tensor([0, 1]), files=[str(good), str(bad)])
    with pytest.raises(DataFileError, match="broken.jpg"):
        ImageDataset(split, KeepSize(8), to_float, cache=True)  # at setup, not mid-epoch
    with pytest.raises(DataFileError, match="broken.jpg"):
        ImageDataset(split, KeepSize(8), to_float, cache=False)[1]


class _RunsCode:
    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.marker}",)


def test_cifar_pickles_are_read_without_running_code(tmp_path) -> None:
    marker = tmp_path / "the-data-file-ran-code"
    payload = _RunsCode()
    payload.marker = marker
    crafted = tmp_path / "data_batch_1"
    crafted.write_bytes(pickle.dumps({b"data": payload, b"labels": [0]}))
    with pytest.raises(DataFileError, match="data_batch_1.*refusing to load posix.system"):
        load_cifar_batch(crafted)
    assert not marker.exists()
    honest = tmp_path / "test_batch"
    images = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    honest.write_bytes(pickle.dumps({b"data": images, b"labels": [3, 4]}))
    entry = load_cifar_batch(honest)
    assert entry[b"labels"] == [3, 4] and np.array_equal(entry[b"data"], images)


# ------------------------------------------------------------------ checkpoints
def _truncated_checkpoint(tmp_path: Path) -> Path:
    whole = tmp_path / "whole.pt"
    torch.save(build_backbone("tiny_cnn", num_classes=10).state_dict(), whole)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return truncated


def test_a_truncated_checkpoint_is_named(tmp_path) -> None:
    truncated = _truncated_checkpoint(tmp_path)
    with pytest.raises(CheckpointReadError, match=f"{truncated}: it is truncated or corrupt"):
        load_weights(build_backbone("tiny_cnn", num_classes=10), truncated)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointReadError, match="garbage.ckpt"):
        load_weights(build_backbone("tiny_cnn", num_classes=10), garbage)


@pytest.mark.parametrize("option", ["--ckpt_path", "--model.init_args.pretrained"])
def test_a_truncated_checkpoint_on_the_command_line_is_named(option, tmp_path, capsys,
                                                             monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])
    truncated = _truncated_checkpoint(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["test", *TINY, option, str(truncated)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert str(truncated) in error and "truncated or corrupt" in error
    assert error.count("\n") == 1


# ------------------------------------------------------------------ methods
def test_twins_without_pretrained_warns_about_its_frozen_wing(tmp_path) -> None:
    with pytest.warns(UserWarning, match="frozen wing keeps the default BatchNorm statistics"):
        TWINS(backbone="tiny_cnn", num_classes=10, mean=[0.5] * 3, std=[0.25] * 3
              ).configure_model()
    source = tmp_path / "source.pt"
    torch.save(build_backbone("tiny_cnn", num_classes=10).state_dict(), source)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TWINS(backbone="tiny_cnn", num_classes=10, mean=[0.5] * 3, std=[0.25] * 3,
              pretrained=str(source)).configure_model()


class _NaNAtStep(StandardTraining):
    """Standard training whose loss turns NaN at global step 3."""

    def training_loss(self, x: Tensor, x_adv: Tensor | None, y: Tensor) -> tuple[Tensor, Tensor]:
        loss, logits = super().training_loss(x, x_adv, y)
        return (loss * float("nan") if self.global_step == 3 else loss), logits


def test_a_non_finite_loss_stops_training_at_once_naming_epoch_and_step(tmp_path) -> None:
    model = _NaNAtStep(backbone="tiny_cnn", num_classes=10, mean=[0.5] * 3, std=[0.25] * 3,
                       lr=0.01, evaluators=[])
    data = TensorDataset(torch.rand(16, 3, 16, 16), torch.randint(0, 10, (16,)))
    trainer = Trainer(max_epochs=3, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      accelerator="cpu", default_root_dir=tmp_path, inference_mode=False)
    with pytest.raises(NonFiniteLossError, match=r"nan at epoch 1, step 3 \(batch 1 of the "
                                                 r"epoch\).*lower model.lr.*32-true"):
        trainer.fit(model, DataLoader(data, batch_size=8))
    assert trainer.global_step == 3  # the NaN step was not taken


def test_the_report_flags_a_model_at_chance() -> None:
    with pytest.warns(SanityCheckWarning, match="at or below chance"):
        at_chance = RobustnessReport({"clean_acc": 0.1}, num_classes=10)
    assert at_chance.failed_checks == ["sanity/clean_above_chance"]
    assert "**FAIL**" in at_chance.to_markdown()
    trained = RobustnessReport({"clean_acc": 0.11}, num_classes=10)
    assert trained.metrics["sanity/clean_above_chance"] == 1.0 and not trained.failed_checks


# ------------------------------------------------------------------ test subsets
def test_first_n_and_explicit_indices_choose_the_test_images(data_root) -> None:
    full = CIFAR10DataModule(root=str(data_root), num_workers=0, cache_in_memory=False)
    full.setup("test")
    first = CIFAR10DataModule(root=str(data_root), num_workers=0, test_first_n=7)
    first.setup("test")
    assert first.test_indices.tolist() == list(range(7))
    assert torch.equal(first.test_dataset.labels, full.test_dataset.labels[:7])
    assert first.describe_test_data()["subset_rule"] == "the first 7 test images (indices 0..6)"
    chosen = CIFAR10DataModule(root=str(data_root), num_workers=0, test_indices=[9000, 3, 1500])
    chosen.setup("test")
    assert torch.equal(chosen.test_dataset.labels, full.test_dataset.labels[[9000, 3, 1500]])
    assert torch.equal(chosen.test_dataset[0][0], full.test_dataset[9000][0])
    assert chosen.describe_test_data()["indices"] == [9000, 3, 1500]


def test_bad_test_subsets_are_refused(data_root) -> None:
    with pytest.raises(ValueError, match="at most one of test_samples_per_class, test_first_n"):
        CIFAR10DataModule(test_samples_per_class=10, test_first_n=100)
    with pytest.raises(ValueError, match="distinct"):
        CIFAR10DataModule(test_indices=[1, 1])
    too_far = CIFAR10DataModule(root=str(data_root), num_workers=0, test_indices=[10_000])
    with pytest.raises(ValueError, match="test split in .* has 10000 images"):
        too_far.setup("test")
    with pytest.raises(ValueError, match="exceeds the 10000"):
        CIFAR10DataModule(root=str(data_root), num_workers=0, test_first_n=10_001).setup("test")


def test_the_cli_records_the_first_n_rule_in_the_report(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])
    main(["test", *TINY, "--data.init_args.test_samples_per_class", "null",
          "--data.init_args.test_first_n", "12", "--model.init_args.report_dir", str(tmp_path)])
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["provenance"]["test_data"]["test_images"] == 12
    assert report["provenance"]["images_per_metric"]["clean_acc"] == 12
    assert report["provenance"]["weights"]["source"].startswith("untrained")
