"""Building backbones and classifiers by name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lit_robust.models import (
    NormalizedClassifier,
    TinyCNN,
    WideResNet,
    available_backbones,
    build_backbone,
    build_classifier,
    register_backbone,
)
from lit_robust.models.cifar_resnet import CifarResNet
from lit_robust.models.zoo import _REGISTRY

SHIPPED = ["preact_resnet18", "resnet18", "resnet34", "resnet50", "tiny_cnn", "tv_resnet50",
           "wrn_28_4", "wrn_34_10"]


def test_every_shipped_name_is_available() -> None:
    assert set(SHIPPED) <= set(available_backbones())
    assert "timm/<model name>" in available_backbones()


@pytest.mark.parametrize("name", ["tiny_cnn", "resnet18", "preact_resnet18", "wrn_28_4",
                                  "tv_resnet50"])
def test_build_backbone_sets_the_number_of_classes(name: str) -> None:
    net = build_backbone(name, num_classes=3)
    heads = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert heads[-1].out_features == 3


def test_keyword_arguments_reach_the_factory() -> None:
    net = build_backbone("tiny_cnn", 10, width=4, in_channels=1)
    assert isinstance(net, TinyCNN) and net.layer1.conv.weight.shape == (4, 1, 3, 3)
    wrn = build_backbone("wrn_28_4", 10, dropout=0.3)
    assert isinstance(wrn, WideResNet) and wrn.blocks()[0].dropout == 0.3


def test_timm_models_are_built_with_random_weights() -> None:
    net = build_backbone("timm/resnet10t", num_classes=4)
    assert net.get_classifier().out_features == 4
    with pytest.raises(ValueError, match="timm has no model named 'no_such_net'"):
        build_backbone("timm/no_such_net", 4)


def test_unknown_names_list_the_available_ones() -> None:
    with pytest.raises(ValueError, match="unknown backbone 'resnet19'.*resnet18.*wrn_34_10"):
        build_backbone("resnet19", 10)
    with pytest.raises(ValueError, match="num_classes"):
        build_backbone("resnet18", 0)


def test_build_classifier_wraps_normalization() -> None:
    model = build_classifier("resnet18", 10, mean=(0.1, 0.2, 0.3), std=(0.5, 0.5, 0.5))
    assert isinstance(model, NormalizedClassifier) and isinstance(model.net, CifarResNet)
    torch.testing.assert_close(model.normalize.mean.flatten(), torch.tensor([0.1, 0.2, 0.3]))


def test_register_backbone_adds_a_user_factory() -> None:
    @register_backbone("test_linear_probe")
    def linear_probe(num_classes: int, size: int = 8) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, num_classes))

    try:
        assert "test_linear_probe" in available_backbones()
        net = build_backbone("test_linear_probe", 6, size=4)
        assert net(torch.rand(2, 3, 4, 4)).shape == (2, 6)
        with pytest.raises(ValueError, match="already registered"):
            register_backbone("test_linear_probe")
        with pytest.raises(ValueError, match="timm/"):
            register_backbone("timm/mine")
    finally:
        del _REGISTRY["test_linear_probe"]
