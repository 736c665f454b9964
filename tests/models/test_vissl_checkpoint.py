"""VISSL checkpoints (the transfer study's SimCLR source): the trunk of ``classy_state_dict``
loads as torchvision weights; the projection head and the training state are left out."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from lit_robust.methods import StandardTraining
from lit_robust.models import CheckpointMismatchError, load_state_dict_file, load_weights


def _trained_like(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = torchvision.models.resnet18(weights=None, num_classes=7)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 1.5)
            elif tensor.is_floating_point():
                tensor.normal_(0, 0.1)
    return net


def write_vissl_checkpoint(net: nn.Module, path: Path) -> Path:
    """VISSL's layout: the trunk under ``classy_state_dict.base_model.model.trunk`` with the
    ``_feature_blocks.`` prefix, SimCLR's projection MLP as the head, and training state."""
    trunk = {f"_feature_blocks.{k}": v for k, v in net.state_dict().items()
             if not k.startswith("fc.")}
    heads = {"0.clf.0.weight": torch.randn(512, 512), "0.clf.0.bias": torch.randn(512),
             "0.clf.2.weight": torch.randn(128, 512), "0.clf.2.bias": torch.randn(128)}
    torch.save({
        "phase_idx": 799, "iteration": 400_000, "iteration_num": 400_000,
        "type": "checkpoint", "train_phase_idx": 799,
        "classy_state_dict": {
            "base_model": {"model": {"trunk": trunk, "heads": heads},
                           "meta": {"iteration": 400_000}},
            "loss": {"num_negatives": 8190, "temperature": 0.1},
            "optimizer": {"param_groups": [{"lr": 0.3, "momentum": 0.9}]},
            "train": True,
        },
    }, path)
    return path


def test_vissl_trunk_loads_into_torchvision_names_without_the_projection_head(tmp_path):
    source = _trained_like(0)
    path = write_vissl_checkpoint(source, tmp_path / "simclr.torch")
    state = load_state_dict_file(path)
    expected = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    assert list(state) == list(expected)
    target = torchvision.models.resnet18(weights=None, num_classes=3)
    head = {k: v.clone() for k, v in target.fc.state_dict().items()}
    load_weights(target, path, skip_head=True)
    for key, value in expected.items():
        torch.testing.assert_close(target.state_dict()[key], value, msg=key)
    for key, value in head.items():  # the new head is the network's own
        torch.testing.assert_close(target.fc.state_dict()[key], value)
    with pytest.raises(CheckpointMismatchError, match="fc.weight"):  # no classifier to load
        load_weights(torchvision.models.resnet18(weights=None, num_classes=3), path)


def test_a_method_starts_from_a_vissl_source(tmp_path):
    source = _trained_like(1)
    path = write_vissl_checkpoint(source, tmp_path / "simclr.torch")
    method = StandardTraining(backbone="timm/resnet18", num_classes=5, pretrained=str(path),
                              reset_head=True, mean=[0.0] * 3, std=[1.0] * 3)
    method.configure_model()
    net = method.model.net
    net.fc, source.fc = nn.Identity(), nn.Identity()
    net.eval(), source.eval()
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(net(x), source(x))  # the same features as the VISSL trunk


def test_vissl_checkpoint_without_a_trunk_says_how_to_convert_it(tmp_path):
    path = tmp_path / "broken.torch"
    torch.save({"classy_state_dict": {"base_model": {"model": {"heads": {}}}}}, path)
    with pytest.raises(ValueError, match=r"without a model trunk: .*base_model\.model holds "
                                         r"\['heads'\].*convert it to a plain state dict"):
        load_state_dict_file(path)
