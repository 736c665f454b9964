"""SimCLR: on-device augmentations vs torchvision, the online probe, CLI runs and the hand-off
of the pre-trained backbone to adversarial fine-tuning."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torchvision.transforms.functional as TF
from lightning.pytorch import Trainer

from lit_robust.data import CIFAR10DataModule
from lit_robust.main import cli
from lit_robust.methods import AdversarialTraining, SimCLR
from lit_robust.methods.simclr import SimCLRAugmentation
from lit_robust.methods.simclr import augment as A
from lit_robust.models.surgery import get_head

REPO = Path(__file__).resolve().parents[2]
TINY_DATA = REPO / "tests" / "conf" / "tiny_cifar10.yaml"
STUDY_AT = REPO / "configs" / "experiments" / "transfer" / "finetune" / "at_l2.yaml"


def images(n: int = 3, size: int = 16) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("ours, theirs, factors", [
    (A.adjust_brightness, TF.adjust_brightness, [0.5, 1.3, 0.9]),
    (A.adjust_contrast, TF.adjust_contrast, [0.4, 1.6, 1.0]),
    (A.adjust_saturation, TF.adjust_saturation, [0.2, 1.8, 0.7]),
    (A.adjust_hue, TF.adjust_hue, [-0.3, 0.1, 0.45]),
])
def test_colour_jitter_matches_torchvision_per_image(ours, theirs, factors) -> None:
    x = images()
    expected = torch.stack([theirs(x[i], f) for i, f in enumerate(factors)])
    torch.testing.assert_close(ours(x, torch.tensor(factors)), expected, atol=2e-6, rtol=0)


def test_grayscale_and_blur_match_torchvision() -> None:
    x = images()
    torch.testing.assert_close(A.grayscale(x), TF.rgb_to_grayscale(x))
    sigma = [0.5, 1.0, 2.0]
    expected = torch.stack([TF.gaussian_blur(x[i], [5, 5], [s, s]) for i, s in enumerate(sigma)])
    torch.testing.assert_close(A.gaussian_blur(x, torch.tensor(sigma), 5), expected)


def test_resized_crop_and_flip_resample_the_right_region() -> None:
    x = images()
    one, zero = torch.ones(3), torch.zeros(3)
    no_flip, flip = torch.zeros(3, dtype=torch.bool), torch.ones(3, dtype=torch.bool)
    torch.testing.assert_close(A.resized_crop_and_flip(x, one, one, zero, zero, no_flip), x)
    torch.testing.assert_close(A.resized_crop_and_flip(x, one, one, zero, zero, flip),
                               x.flip(-1))
    half = torch.full((3,), 0.5)
    top_left = A.resized_crop_and_flip(x, half, half, -half, -half, no_flip)
    upsampled = torch.nn.functional.interpolate(x[..., :8, :8], size=16, mode="bilinear",
                                                align_corners=False)
    # equal away from the crop's right and bottom borders, where bilinear resampling of the
    # whole image reads the neighbouring pixel instead of repeating the edge
    torch.testing.assert_close(top_left[..., :15, :15], upsampled[..., :15, :15])


def test_views_are_random_per_image_and_reproducible_with_a_generator() -> None:
    augmentation = SimCLRAugmentation(blur_probability=0.5)
    x = images(1).expand(8, 3, 16, 16)
    view = augmentation(x, torch.Generator().manual_seed(0))
    assert view.shape == x.shape and view.min() >= 0 and view.max() <= 1
    assert not torch.allclose(view[0], view[1])  # the same image gets different parameters
    torch.testing.assert_close(augmentation(x, torch.Generator().manual_seed(0)), view)
    assert not torch.allclose(augmentation(x, torch.Generator().manual_seed(1)), view)


@pytest.mark.parametrize("bad", [{"crop_scale": (0.5, 1.5)}, {"crop_scale": (0.6, 0.2)},
                                 {"jitter_probability": 1.5}, {"jitter_strength": 2.0}])
def test_bad_augmentation_settings_fail_early(bad: dict) -> None:
    with pytest.raises(ValueError):
        SimCLRAugmentation(**bad)


def test_bad_simclr_arguments_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="temperature"):
        SimCLR(backbone="tiny_cnn", temperature=0.0)
    with pytest.raises(ValueError, match="projection"):
        SimCLR(backbone="tiny_cnn", projection_dim=0)


def simclr(**kwargs) -> SimCLR:
    torch.manual_seed(0)
    model = SimCLR(backbone="tiny_cnn", num_classes=10, mean=[0.5] * 3, std=[0.25] * 3, **kwargs)
    model.configure_model()
    return model


def test_the_online_probe_does_not_train_the_backbone() -> None:
    model = simclr(projection_dim=16)
    x, y = images(6, 32), torch.arange(6)
    torch.manual_seed(1)
    loss, logits = model.training_loss(x, None, y)
    assert logits.shape == (6, 10)
    loss.backward()
    head = get_head(model.model.net)[1]
    backbone = [(n, p) for n, p in model.model.net.named_parameters() if not n.startswith("linear")]
    with_probe = {n: p.grad.clone() for n, p in backbone}
    assert head.weight.grad.abs().sum() > 0
    model.zero_grad()
    torch.manual_seed(1)
    contrastive, _ = model.contrastive_loss(x)
    contrastive.backward()
    for name, parameter in backbone:
        torch.testing.assert_close(with_probe[name], parameter.grad, msg=name)
    assert all(p.grad is not None for p in model.projector.parameters())


def test_optimizer_updates_the_projection_head() -> None:
    model = simclr()
    trained = {id(p) for p in model.param_groups()}
    assert all(id(p) in trained for p in model.projector.parameters())
    assert all(id(p) in trained for p in model.model.parameters())


def pretrain_checkpoint(tmp_path: Path) -> tuple[Path, SimCLR]:
    data = CIFAR10DataModule(samples_per_class=2, val_size=20, batch_size=8, num_workers=0)
    model = SimCLR(backbone="tiny_cnn", projection_dim=16, lr=0.05)
    trainer = Trainer(max_epochs=1, limit_val_batches=1, logger=False, inference_mode=False,
                      enable_progress_bar=False, enable_checkpointing=False,
                      enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, data)
    assert {"train/nt_xent_epoch", "val/nt_xent", "val/acc"} <= set(trainer.callback_metrics)
    path = tmp_path / "simclr.ckpt"
    trainer.save_checkpoint(path)
    return path, model


def test_simclr_checkpoint_hands_the_backbone_without_projector_to_fine_tuning(
    tmp_path: Path,
) -> None:
    path, source = pretrain_checkpoint(tmp_path)
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert any(k.startswith("projector.") for k in saved)
    target = AdversarialTraining(backbone="tiny_cnn", num_classes=43, mean=[0.4] * 3,
                                 std=[0.2] * 3, pretrained=str(path), reset_head=True)
    target.configure_model()
    assert not hasattr(target, "projector") or target.projector is None
    assert target.model.net.linear.out_features == 43
    source_net, target_net = source.model.net.eval(), target.model.net.eval()
    h = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(target_net.forward_features(h), source_net.forward_features(h))
    for key, value in source_net.state_dict().items():
        if not key.startswith("linear."):
            torch.testing.assert_close(target_net.state_dict()[key], value, msg=key)


def test_study_adversarial_fine_tuning_from_a_simclr_checkpoint(tmp_path: Path,
                                                                 monkeypatch) -> None:
    path, _ = pretrain_checkpoint(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])
    run = cli([
        "fit", "--config", str(TINY_DATA), "--config", str(STUDY_AT),
        "--model.init_args.backbone", "tiny_cnn",
        "--model.init_args.pretrained", str(path),
        "--trainer.fast_dev_run", "true",
    ])
    attack = run.model.attack
    assert (attack.norm, attack.eps, attack.steps) == ("l2", 0.5, 3)
    assert attack.step_size == 0.33334  # the study's --attack-lr (pre_training.sh)
    assert run.trainer.global_step == 1
    x, y = next(iter(run.datamodule.train_dataloader()))
    delta = (attack(run.model.model, x, y) - x).flatten(1).norm(dim=1)
    assert (delta <= 0.5 + 1e-4).all() and delta.max() > 0.4


def test_cli_fit_then_test_simclr(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])
    run = cli([
        "fit", "--config", str(TINY_DATA),
        "--config", str(REPO / "configs" / "method" / "simclr.yaml"),
        "--model.init_args.backbone", "tiny_cnn",
        "--trainer.fast_dev_run", "true",
        "--test_after_fit", "true",
        "--model.init_args.report_dir", str(tmp_path / "reports"),
    ])
    assert run.trainer.global_step == 1
    assert "clean_acc" in run.model.test_results
    assert list((tmp_path / "reports").rglob("report.json"))


def test_a_batch_of_one_image_is_refused_before_training(tmp_path: Path, monkeypatch,
                                                         capsys) -> None:
    """With one image per batch NT-Xent is exactly 0 with a zero gradient: SimCLR used to
    train nothing, silently."""
    from lit_robust.losses import nt_xent
    from lit_robust.main import main

    z1, z2 = torch.randn(1, 4, requires_grad=True), torch.randn(1, 4, requires_grad=True)
    loss = nt_xent(z1, z2, 0.5)
    loss.backward()
    assert float(loss) == 0.0 and not z1.grad.any() and not z2.grad.any()

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(TINY_DATA),
              "--config", str(REPO / "configs" / "method" / "simclr.yaml"),
              "--model.init_args.backbone", "tiny_cnn", "--data.init_args.batch_size", "1",
              "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith(
        "lit-robust: error: SimCLR needs at least 2 images per training batch, got "
        "batch_size=1: the two views of one image are each other's only candidates")
    assert not list(tmp_path.rglob("*.ckpt"))
