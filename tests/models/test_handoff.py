"""Hand-off from any source: a lit_robust checkpoint of one method into another, and the
external formats (robust-models-transfer, torchvision, timm, RobustBench) into a new head.

In every case the loaded backbone computes what the source computes, up to the head."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from lightning.pytorch import Trainer
from safetensors.torch import save_file
from torch import Tensor, nn

from lit_robust.attacks import PGDAttack
from lit_robust.data import CIFAR10DataModule
from lit_robust.main import cli
from lit_robust.methods import AdversarialTraining, RiFT, StandardTraining
from lit_robust.methods.twins import TWINS
from lit_robust.models import CheckpointMismatchError, export_adaptive, get_head
from lit_robust.models.dual_bn import dual_batchnorms, use_wing
from lit_robust.models.preact_resnet import preact_resnet18
from lit_robust.models.wide_resnet import WideResNet
from tests.data.transfer_files import write_food101

MEAN, STD = [0.5, 0.45, 0.4], [0.25, 0.25, 0.25]
TARGETS = Path(__file__).resolve().parents[2] / "configs" / "experiments" / "transfer" / "targets"


def features(model: nn.Module, x: Tensor) -> Tensor:
    """The input of the model's classifier head (eval mode, no gradients)."""
    captured: list[Tensor] = []
    handle = get_head(model)[1].register_forward_hook(lambda m, i, o: captured.append(i[0]))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
        model.train(was_training)
    return captured[0]


def fit_and_save(method, path: Path, steps: int = 3) -> Path:
    """A few training steps on real CIFAR-10 images, then a Lightning checkpoint."""
    data = CIFAR10DataModule(samples_per_class=2, val_size=0, batch_size=8, num_workers=0)
    trainer = Trainer(max_steps=steps, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      inference_mode=False, accelerator="cpu", num_sanity_val_steps=0,
                      default_root_dir=path.parent)
    trainer.fit(method, data)
    trainer.save_checkpoint(path)
    return path


def tiny(method_class, **kwargs):
    return method_class(backbone="tiny_cnn", mean=MEAN, std=STD, **kwargs)


def test_adversarial_training_checkpoint_into_twins(tmp_path):
    source = tiny(AdversarialTraining, num_classes=10, attack=PGDAttack(steps=1))
    checkpoint = fit_and_save(source, tmp_path / "at.ckpt")
    target = tiny(TWINS, num_classes=4, pretrained=str(checkpoint), reset_head=True)
    target.configure_model()
    x = torch.rand(6, 3, 32, 32)
    assert len(dual_batchnorms(target.model)) == 4
    assert get_head(target.model)[1].out_features == 4
    torch.testing.assert_close(features(target.model, x), features(source.model, x),
                               rtol=0, atol=0)
    with use_wing(target.model, "frozen"):  # the frozen wing keeps the source's statistics
        torch.testing.assert_close(features(target.model, x), features(source.model, x),
                                   rtol=0, atol=0)
    untrained = tiny(TWINS, num_classes=4)
    untrained.configure_model()
    assert not torch.allclose(features(untrained.model, x), features(source.model, x))


def test_twins_checkpoint_into_rift_keeps_the_adaptive_wings(tmp_path):
    source = tiny(TWINS, num_classes=10, attack=PGDAttack(steps=1), log_grad_ratio_every_n_steps=0)
    checkpoint = fit_and_save(source, tmp_path / "twins.ckpt")
    saved = torch.load(checkpoint, weights_only=True)["state_dict"]
    assert "model.net.layer1.bn.frozen.running_mean" in saved
    assert "model.net.layer1.bn.adaptive.running_mean" in saved
    target = tiny(RiFT, num_classes=3, pretrained=str(checkpoint), reset_head=True)
    target.configure_model()
    assert not dual_batchnorms(target.model)
    x = torch.rand(6, 3, 32, 32)
    expected = features(export_adaptive(source.model), x)
    torch.testing.assert_close(features(target.model, x), expected, rtol=0, atol=0)
    with use_wing(source.model, "frozen"):  # training moved the wings apart
        assert not torch.allclose(features(source.model, x), expected)


def _prefixed(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {prefix + key: value for key, value in state.items()}


def _robust_models_transfer(net: nn.Module) -> dict:
    """robust-models-transfer's ImageNet checkpoint: ``model`` holds the DataParallel
    AttackerModel (normalizer, model, attacker copy) next to training state."""
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    state = {"module.normalizer.new_mean": mean, "module.normalizer.new_std": std,
             **_prefixed(net.state_dict(), "module.model."),
             "module.attacker.normalize.new_mean": mean, "module.attacker.normalize.new_std": std,
             **_prefixed(net.state_dict(), "module.attacker.model.")}
    return {"model": state, "optimizer": {"state": {}, "param_groups": []}, "schedule": None,
            "epoch": 90}


def _randomize_bn(net: nn.Module) -> nn.Module:
    """Non-trivial running statistics, as a trained network has."""
    generator = torch.Generator().manual_seed(1)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1, generator=generator)
            module.running_var.uniform_(0.5, 1.5, generator=generator)
    return net


# RobustBench's names, read from robustbench/model_zoo/architectures/{wide_resnet,resnet}.py
ROBUSTBENCH_WRN_KEYS = {
    "conv1.weight", "block1.layer.0.bn1.running_mean", "block1.layer.0.conv1.weight",
    "block1.layer.0.bn2.weight", "block1.layer.0.conv2.weight",
    "block1.layer.0.convShortcut.weight", "block2.layer.0.convShortcut.weight",
    "block3.layer.1.bn2.running_var", "sub_block1.layer.0.conv1.weight", "bn1.weight",
    "fc.weight", "fc.bias", "mu", "sigma",
}
ROBUSTBENCH_PREACT_KEYS = {
    "conv1.weight", "layer1.0.bn1.weight", "layer1.0.conv1.weight", "layer1.1.bn2.running_mean",
    "layer2.0.shortcut.0.weight", "layer4.1.conv2.weight", "bn.weight", "bn.running_var",
    "linear.weight", "linear.bias", "mu", "sigma",
}


def _robustbench_wrn() -> tuple[nn.Module, dict]:
    """A WideResNet-16-2 and its RobustBench checkpoint: TRADES-style ``sub_block1`` copy,
    ``mu`` / ``sigma`` buffers, saved from DataParallel under ``state_dict``."""
    net = _randomize_bn(WideResNet(depth=16, widen_factor=2, num_classes=10))
    state = dict(net.state_dict())
    state.update({key.replace("block1.", "sub_block1.", 1): value.clone()
                  for key, value in net.state_dict().items() if key.startswith("block1.")})
    state["mu"] = torch.tensor(MEAN).view(1, 3, 1, 1)
    state["sigma"] = torch.tensor(STD).view(1, 3, 1, 1)
    assert ROBUSTBENCH_WRN_KEYS <= set(state)
    return net, {"state_dict": _prefixed(state, "module."), "epoch": 100}


def _robustbench_preact() -> tuple[nn.Module, dict]:
    """PreActResNet(PreActBlockV2, [2, 2, 2, 2], bn_before_fc=True) (e.g. Rice2020Overfitting
    L2), a plain state dict with ``mu`` / ``sigma``."""
    net = _randomize_bn(preact_resnet18(num_classes=10))
    state = {**net.state_dict(), "mu": torch.tensor(MEAN).view(1, 3, 1, 1),
             "sigma": torch.tensor(STD).view(1, 3, 1, 1)}
    assert ROBUSTBENCH_PREACT_KEYS <= set(state)
    return net, state


def _torchvision_resnet50() -> tuple[nn.Module, dict]:
    net = _randomize_bn(torchvision.models.resnet50(weights=None))
    return net, net.state_dict()


def _robust_models_transfer_resnet50() -> tuple[nn.Module, dict]:
    net = _randomize_bn(torchvision.models.resnet50(weights=None))
    return net, _robust_models_transfer(net)


def _timm_resnet18() -> tuple[nn.Module, dict]:
    net = _randomize_bn(timm.create_model("resnet18", pretrained=False))
    return net, net.state_dict()


# (id, source builder, file name, backbone, backbone kwargs, input size)
EXTERNAL = [
    ("robust-models-transfer", _robust_models_transfer_resnet50, "resnet50_l2_eps3.ckpt",
     "tv_resnet50", None, 64),
    ("torchvision", _torchvision_resnet50, "resnet50-0676ba61.pth", "tv_resnet50", None, 64),
    ("timm-safetensors", _timm_resnet18, "model.safetensors", "timm/resnet18", None, 64),
    ("timm-pth", _timm_resnet18, "pytorch_model.bin", "timm/resnet18", None, 64),
    ("robustbench-wrn", _robustbench_wrn, "Zhang2019Theoretically.pt", "wide_resnet",
     {"depth": 16, "widen_factor": 2}, 32),
    ("robustbench-preact", _robustbench_preact, "Rice2020Overfitting.pt", "preact_resnet18",
     None, 32),
]


@pytest.mark.parametrize(("build", "name", "backbone", "kwargs", "size"),
                         [case[1:] for case in EXTERNAL], ids=[case[0] for case in EXTERNAL])
def test_external_checkpoint_into_a_new_head(tmp_path, build, name, backbone, kwargs, size):
    source, saved = build()
    path = tmp_path / name
    if name.endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in saved.items()}, str(path))
    else:
        torch.save(saved, path)
    target = StandardTraining(backbone=backbone, backbone_kwargs=kwargs, num_classes=7,
                              mean=MEAN, std=STD, pretrained=str(path), reset_head=True)
    target.configure_model()
    assert get_head(target.model)[1].out_features == 7
    x = torch.rand(2, 3, size, size)
    normalized = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    torch.testing.assert_close(features(target.model, x), features(source, normalized),
                               rtol=1e-5, atol=1e-6)


def test_a_checkpoint_of_another_architecture_lists_the_keys(tmp_path):
    """RobustBench's PreActResNet without bn_before_fc has no final BN: the error names it."""
    net, state = _robustbench_preact()
    torch.save({k: v for k, v in state.items() if not k.startswith("bn.")}, tmp_path / "p.pt")
    target = StandardTraining(backbone="preact_resnet18", num_classes=7, mean=MEAN, std=STD,
                              pretrained=str(tmp_path / "p.pt"), reset_head=True)
    with pytest.raises(CheckpointMismatchError, match="missing key.*bn.running_mean") as error:
        target.configure_model()
    assert set(error.value.missing) == {"bn.weight", "bn.bias", "bn.running_mean",
                                        "bn.running_var", "bn.num_batches_tracked"}


def test_a_target_config_takes_the_source_checkpoint_as_its_one_argument(tmp_path, monkeypatch):
    source = tiny(AdversarialTraining, num_classes=10, attack=PGDAttack(steps=1))
    checkpoint = fit_and_save(source, tmp_path / "source.ckpt")
    write_food101(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])
    run = cli(["validate", "--config", str(TARGETS / "food101.yaml"),
               "--model.init_args.pretrained", str(checkpoint),
               # the tiny source's architecture and normalization instead of ResNet-50's
               "--model.init_args.backbone", "tiny_cnn", "--model.init_args.mean", str(MEAN),
               "--model.init_args.std", str(STD),
               "--data.init_args.root", str(tmp_path / "data"), "--data.init_args.num_workers",
               "0", "--data.init_args.image_size", "32", "--trainer.accelerator", "cpu",
               "--trainer.logger", "false"])
    assert get_head(run.model.model)[1].out_features == 3  # Food-101's classes in the files
    x = torch.rand(4, 3, 32, 32)
    torch.testing.assert_close(features(run.model.model, x), features(source.model, x),
                               rtol=0, atol=0)
