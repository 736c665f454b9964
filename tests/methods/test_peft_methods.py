"""Parameter selections through the CLI: robust methods on tiny random timm ViTs and ConvNeXts
and on TWINS' dual BatchNorm, the counts logged, and a checkpoint that tests as trained."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from lit_robust.main import cli, main

REPO = Path(__file__).resolve().parents[2]
TINY = ["--config", str(REPO / "tests/conf/tiny_model.yaml"),
        "--config", str(REPO / "tests/conf/tiny_cifar10.yaml"),
        "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false"]
VIT = ["--model.backbone", "timm/vit_tiny_patch16_224", "--model.backbone_kwargs",
       json.dumps({"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2})]
CONVNEXT = ["--model.backbone", "timm/convnext_atto", "--model.backbone_kwargs",
            json.dumps({"depths": [1, 1, 1, 1], "dims": [8, 16, 32, 64]})]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])


@pytest.mark.parametrize(("method", "backbone", "peft"), [
    ("AdversarialTraining", VIT, "lit_robust.models.peft.LoRA"),
    ("TRADES", CONVNEXT, "lit_robust.models.peft.Adapters"),
    ("TWINS", ["--model.backbone", "tiny_cnn"], "lit_robust.models.peft.BiasOnly"),
], ids=["at-vit-lora", "trades-convnext-adapters", "twins-bias"])
def test_a_robust_method_trains_a_parameter_selection(method, backbone, peft) -> None:
    run = cli(["fit", *TINY, "--model", method, *backbone, "--model.peft", peft,
               "--trainer.fast_dev_run", "true"])
    metrics = run.trainer.callback_metrics
    trainable, total = metrics["train/trainable_params"], metrics["train/total_params"]
    counted = sum(p.numel() for p in run.model.model.parameters() if p.requires_grad)
    assert trainable == counted and 0 < trainable < total / 2


def test_a_selection_that_does_not_fit_the_network_is_a_one_line_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *TINY, "--model.backbone", "tiny_cnn", "--model.peft",
              "lit_robust.models.peft.Adapters", "--trainer.fast_dev_run", "true"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("lit-robust: error: model.peft: Adapters found no module matching")
    assert "\n" not in error


def test_a_lora_checkpoint_tests_with_the_trained_weights() -> None:
    fit = cli(["fit", *TINY, *VIT, "--model.peft", "lit_robust.models.peft.LoRA",
               "--model.peft.rank", "2", "--trainer.max_epochs", "1",
               "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1"])
    tested = cli(["test", *TINY, *VIT, "--model.peft", "lit_robust.models.peft.LoRA",
                  "--model.peft.rank", "2", "--ckpt_path", "last"])
    trained = fit.model.model.state_dict()
    restored = tested.model.model.state_dict()
    assert any("lora_A" in key for key in restored) and restored.keys() == trained.keys()
    assert all(torch.equal(restored[k], trained[k]) for k in trained)
