"""Head lookup and replacement, freezing, BN modes and RiFT's candidate modules."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from lit_robust.models import (
    NormalizedClassifier,
    TinyCNN,
    WideResNet,
    build_backbone,
    freeze,
    get_head,
    named_candidate_modules,
    replace_head,
    resnet18,
    set_bn_eval,
    unfreeze,
)


@pytest.mark.parametrize(
    ("net", "name"),
    [
        pytest.param(lambda: TinyCNN(10, width=4), "linear", id="tiny"),
        pytest.param(lambda: WideResNet(10, 1), "fc", id="wrn"),
        pytest.param(lambda: torchvision.models.resnet18(num_classes=10), "fc", id="torchvision"),
        pytest.param(lambda: build_backbone("timm/resnet10t", 10), "fc", id="timm"),
        pytest.param(lambda: torchvision.models.mobilenet_v3_small(num_classes=10), None,
                     id="no-linear-head"),
    ],
)
def test_get_head(net, name: str | None) -> None:
    net = net()
    if name is None:
        with pytest.raises(ValueError, match="no nn.Linear classifier head"):
            get_head(net)
        return
    found, head = get_head(net)
    assert found == name and head is net.get_submodule(name)


def test_get_head_looks_through_the_normalized_classifier() -> None:
    net = TinyCNN(10, width=4)
    name, head = get_head(NormalizedClassifier(net, (0.5,), (0.5,)))
    assert name == "net.linear" and head is net.linear


def test_replace_head_keeps_features_and_changes_classes() -> None:
    torch.manual_seed(0)
    net = TinyCNN(10, width=4).to(torch.float64).eval()
    old = net.linear
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        features = net.forward_features(x)
    new = replace_head(net, 7)
    assert net.linear is new and new is not old
    assert (new.in_features, new.out_features) == (old.in_features, 7)
    assert new.weight.dtype == torch.float64 and new.weight.requires_grad
    with torch.no_grad():
        assert net(x).shape == (2, 7)
        torch.testing.assert_close(net.forward_features(x), features)
    with pytest.raises(ValueError, match="num_classes"):
        replace_head(net, 0)


def test_replace_head_of_a_timm_model_updates_num_classes() -> None:
    net = build_backbone("timm/resnet10t", 10)
    replace_head(net, 3)
    assert net.num_classes == 3 and net.get_classifier().out_features == 3
    assert net.eval()(torch.rand(1, 3, 32, 32)).shape == (1, 3)


def test_replace_head_of_a_wrapped_classifier() -> None:
    model = NormalizedClassifier(resnet18(10), (0.5,), (0.5,))
    new = replace_head(model, 100)
    assert model.net.linear is new and new.out_features == 100


def test_freeze_and_unfreeze_are_inverse() -> None:
    net = TinyCNN(10, width=4)
    freeze(net.layer1)
    assert not any(p.requires_grad for p in net.layer1.parameters())
    assert all(p.requires_grad for p in net.linear.parameters())
    net(torch.rand(2, 3, 16, 16)).sum().backward()
    assert net.layer1.conv.weight.grad is None and net.layer2.conv.weight.grad is not None
    unfreeze(net)
    assert all(p.requires_grad for p in net.parameters())


def test_set_bn_eval_only_touches_batchnorm() -> None:
    net = WideResNet(10, 1, dropout=0.5).train()
    set_bn_eval(net)
    assert all(not m.training for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    assert net.training and net.blocks()[0].training
    before = net.bn1.running_mean.clone()
    net(torch.rand(4, 3, 16, 16))
    torch.testing.assert_close(net.bn1.running_mean, before)
    net.train()
    assert net.bn1.training


def test_candidate_modules_are_convs_and_linears_in_order() -> None:
    net = resnet18()
    names = [name for name, _ in named_candidate_modules(net)]
    assert names[0] == "conv1" and names[-1] == "linear"
    assert names[:4] == ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1"]
    assert "layer2.0.shortcut.0" in names
    assert not any("bn" in name or name.endswith("shortcut.1") for name in names)
    assert len(names) == 21  # 1 stem + 16 block convs + 3 shortcuts + 1 linear
    linears = list(named_candidate_modules(net, types=(nn.Linear,)))
    assert [name for name, _ in linears] == ["linear"] and linears[0][1] is net.linear
