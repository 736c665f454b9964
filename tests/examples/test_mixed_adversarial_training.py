"""The subclassing example in examples/ runs through the CLI and computes the loss it states."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.shared_paths import shared_data_root

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "mixed_adversarial_training.py"


def load_example():
    spec = importlib.util.spec_from_file_location("mixed_adversarial_training", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_loss_is_the_weighted_clean_and_adversarial_cross_entropy():
    example = load_example()
    method = example.MixedAdversarialTraining(adversarial_weight=0.25, num_classes=3)
    method.model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    x, x_adv = torch.rand(4, 3, 2, 2), torch.rand(4, 3, 2, 2)
    y = torch.tensor([0, 1, 2, 1])
    loss, logits = method.training_loss(x, x_adv, y)
    expected = (0.75 * F.cross_entropy(method.model(x), y)
                + 0.25 * F.cross_entropy(method.model(x_adv), y))
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(logits, method.model(x_adv))
    with pytest.raises(ValueError, match=r"adversarial_weight must be in \[0, 1\]"):
        example.MixedAdversarialTraining(adversarial_weight=1.5)


def test_example_script_fits_through_the_cli(tmp_path):
    command = [
        sys.executable, str(EXAMPLE), "fit",
        "--config", str(REPO / "tests" / "conf" / "tiny_cifar10.yaml"),
        "--model", "MixedAdversarialTraining",
        "--model.init_args.backbone", "tiny_cnn",
        "--model.init_args.adversarial_weight", "0.5",
        "--data.init_args.root", str(shared_data_root()),
        "--trainer.fast_dev_run", "true",
        "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
    ]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    checkpoint = torch.load(next(tmp_path.rglob("last.ckpt")), weights_only=False)
    assert checkpoint["hyper_parameters"]["adversarial_weight"] == 0.5
    assert checkpoint["global_step"] == 1
