"""Gaussian augmentation and consistency regularization: losses, validation, CLI, real data."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer

from lit_robust.data import CIFAR10DataModule
from lit_robust.evaluation import CleanAccuracy, SmoothingCertification
from lit_robust.losses import consistency_loss
from lit_robust.main import cli
from lit_robust.methods import ConsistencyRegularization, GaussianAugmentation, StandardTraining
from tests.methods.real_cifar10 import fit_and_test_on_cifar10

REPO = Path(__file__).resolve().parents[2]
TINY_DATA = REPO / "tests" / "conf" / "tiny_cifar10.yaml"
TINY_CERTIFICATION = REPO / "tests" / "conf" / "tiny_certification.yaml"
MODEL = dict(backbone="tiny_cnn", num_classes=10, mean=[0.5] * 3, std=[0.25] * 3)


def built(method: type, **kwargs) -> GaussianAugmentation:
    torch.manual_seed(0)
    model = method(**MODEL, **kwargs)
    model.configure_model()
    return model


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.rand(4, 3, 32, 32, generator=generator), torch.tensor([0, 3, 5, 9])


def test_gaussian_augmentation_is_cross_entropy_on_unclamped_pixel_noise() -> None:
    model = built(GaussianAugmentation, sigma=0.5)
    x, y = batch()
    torch.manual_seed(7)
    loss, logits = model.training_loss(x, None, y)
    torch.manual_seed(7)
    noisy = x + 0.5 * torch.randn_like(x)
    assert noisy.min() < -0.5 and noisy.max() > 1.5  # the reference input is not clamped
    torch.testing.assert_close(logits, model.model(noisy))
    torch.testing.assert_close(loss, F.cross_entropy(model.model(noisy), y))


def test_noisy_copies_have_the_configured_spread() -> None:
    model = built(GaussianAugmentation, sigma=0.25, num_noise_samples=3)
    x = torch.full((64, 3, 8, 8), 0.5)
    copies = model.noisy_copies(x)
    assert copies.shape == (192, 3, 8, 8)
    assert (copies - 0.5).std().item() == pytest.approx(0.25, rel=0.02)
    assert not torch.equal(copies[:64], copies[64:128])  # every copy draws its own noise


def test_consistency_regularization_trains_on_the_consistency_loss_of_m_copies() -> None:
    model = built(ConsistencyRegularization, sigma=0.5, num_noise_samples=3,
                  consistency_weight=5.0, entropy_weight=0.5)
    x, y = batch()
    torch.manual_seed(3)
    loss, _ = model.training_loss(x, None, y)
    torch.manual_seed(3)
    copies = x.repeat(3, 1, 1, 1)
    logits = model.model(copies + 0.5 * torch.randn_like(copies)).view(3, 4, 10)
    torch.testing.assert_close(loss, consistency_loss(logits, y, 5.0, 0.5))
    torch.manual_seed(3)
    plain, _ = built(GaussianAugmentation, sigma=0.5, num_noise_samples=3).training_loss(x, None, y)
    assert loss > plain + 0.05  # the consistency and entropy terms are really added


def test_consistency_without_weights_is_gaussian_augmentation_with_m_copies() -> None:
    x, y = batch()
    cr = built(ConsistencyRegularization, num_noise_samples=2, consistency_weight=0.0,
               entropy_weight=0.0)
    ga = built(GaussianAugmentation, num_noise_samples=2)
    torch.manual_seed(5)
    loss_cr, _ = cr.training_loss(x, None, y)
    torch.manual_seed(5)
    loss_ga, _ = ga.training_loss(x, None, y)
    torch.testing.assert_close(loss_cr, loss_ga)


@pytest.mark.parametrize("method, bad", [
    (GaussianAugmentation, {"sigma": 0.0}),
    (GaussianAugmentation, {"sigma": 64.0}),
    (GaussianAugmentation, {"num_noise_samples": 0}),
    (GaussianAugmentation, {"val_certify_alpha": 1.0}),
    (ConsistencyRegularization, {"consistency_weight": -1.0}),
    (ConsistencyRegularization, {"num_noise_samples": 1}),
])
def test_bad_arguments_fail_at_construction(method: type, bad: dict) -> None:
    with pytest.raises(ValueError):
        method(backbone="tiny_cnn", **bad)


def test_validation_reports_noisy_and_certified_accuracy(tmp_path: Path) -> None:
    data = CIFAR10DataModule(samples_per_class=2, val_size=20, batch_size=8, num_workers=0)
    model = ConsistencyRegularization(backbone="tiny_cnn", val_certify_images=3, val_certify_n=20)
    trainer = Trainer(fast_dev_run=True, logger=False, inference_mode=False,
                      enable_progress_bar=False, default_root_dir=tmp_path)
    trainer.fit(model, data)
    metrics = trainer.callback_metrics
    assert {"val/acc", "val/noisy_acc", "val/certified_acc", "val/acr"} <= set(metrics)
    assert metrics["val/certified_acc"] in (0.0, 1 / 3, 2 / 3, 1.0)  # three images certified


@pytest.mark.parametrize("config", ["gaussian_augmentation", "consistency_regularization"])
def test_cli_fit_then_test_certifies(config: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])
    run = cli([
        "fit", "--config", str(TINY_DATA),
        "--config", str(REPO / "configs" / "method" / f"{config}.yaml"),
        "--config", str(TINY_CERTIFICATION),
        "--model.init_args.backbone", "tiny_cnn",
        "--trainer.fast_dev_run", "true",
        "--test_after_fit", "true",
        "--model.init_args.report_dir", str(tmp_path / "reports"),
    ])
    results = run.model.test_results
    assert {"clean_acc", "smoothing_sigma0.5/acr", "smoothing_sigma0.5/num_images"} <= set(results)
    assert results["smoothing_sigma0.5/num_images"] == 4  # every other image of one batch of 8
    report = json.loads(next((tmp_path / "reports").rglob("report.json")).read_text())
    assert report["metrics"]["smoothing_sigma0.5/acr"] == results["smoothing_sigma0.5/acr"]


def train_and_certify(model) -> dict[str, float]:
    """Train on 1,500 real CIFAR-10 images for 8 epochs; certify 80 test images."""
    return fit_and_test_on_cifar10(model, samples_per_class=150, test_samples_per_class=8, epochs=8)


@pytest.mark.slow
def test_noise_training_certifies_a_larger_radius_than_standard_training() -> None:
    """Measured here (tiny_cnn, 1,500 images, 8 epochs, 80 test images, σ = 0.25, n = 100):
    standard training ACR 0.050 and certified accuracy 15%, Gaussian augmentation ACR 0.129
    and 44%; with other seeds and test images ST 0.04–0.07 and GA 0.11–0.13. The largest
    possible radius with n = 100 is 0.375."""
    def evaluators() -> list:
        return [CleanAccuracy(), SmoothingCertification(sigma=0.25, n0=10, n=100, skip=1,
                                                        max_images=None, batch_size=1100)]

    common = dict(backbone="tiny_cnn", lr=0.05, schedule="cosine", val_attack=None)
    st = train_and_certify(StandardTraining(**common, evaluators=evaluators()))
    ga = train_and_certify(GaussianAugmentation(sigma=0.25, **common, evaluators=evaluators()))
    print({"st": st, "ga": ga})
    acr, acc = "smoothing_sigma0.25/acr", "smoothing_sigma0.25/certified_acc@0"
    assert st["smoothing_sigma0.25/num_images"] == ga["smoothing_sigma0.25/num_images"] == 80
    assert ga[acr] > st[acr] + 0.035
    assert ga[acr] > 1.5 * st[acr]
    assert ga[acc] > st[acc] + 0.1
