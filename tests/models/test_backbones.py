"""Shapes, module names and block structure of the backbones."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lit_robust.models import (
    TinyCNN,
    WideResNet,
    preact_resnet18,
    resnet18,
    resnet34,
    resnet50,
    wrn_28_4,
    wrn_34_10,
)


@pytest.mark.parametrize(
    ("factory", "num_features", "head"),
    [
        (lambda c: TinyCNN(c), 128, "linear"),
        (lambda c: TinyCNN(c, width=4, in_channels=1), 32, "linear"),
        (resnet18, 512, "linear"),
        (resnet34, 512, "linear"),
        (resnet50, 2048, "linear"),
        (preact_resnet18, 512, "linear"),
        (lambda c: WideResNet(depth=10, widen_factor=2, num_classes=c), 128, "fc"),
    ],
)
def test_logits_and_features_shapes(factory, num_features: int, head: str) -> None:
    torch.manual_seed(0)
    net = factory(7).eval()
    in_channels = net.get_submodule("layer1.conv" if isinstance(net, TinyCNN) else "conv1")
    x = torch.rand(2, in_channels.in_channels, 16, 16)  # global pooling: any size >= 8 works
    with torch.no_grad():
        logits = net(x)
        features = net.forward_features(x)
    assert logits.shape == (2, 7)
    assert features.shape == (2, num_features)
    assert net.num_features == num_features
    classifier = getattr(net, head)
    assert isinstance(classifier, nn.Linear) and classifier.in_features == num_features
    torch.testing.assert_close(classifier(features), logits)


def test_cifar_resnet_module_names() -> None:
    names = set(resnet18().state_dict())
    for key in [
        "conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer1.1.bn2.bias",
        "layer2.0.shortcut.0.weight", "layer2.0.shortcut.1.running_var",
        "layer4.1.conv2.weight", "linear.weight", "linear.bias",
    ]:
        assert key in names
    assert "layer1.0.shortcut.0.weight" not in names  # identity shortcut inside a stage
    bottleneck = set(resnet50().state_dict())
    assert {"layer1.0.conv3.weight", "layer1.0.bn3.weight", "layer1.0.shortcut.0.weight"} <= (
        bottleneck
    )
    assert len(resnet18().state_dict()) == 122  # as the state dict AutoAttack ships
    assert len(resnet34().layer3) == 6


def test_cifar_resnet_has_no_maxpool_and_a_stride_one_stem() -> None:
    net = resnet18()
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in net.modules())


def test_preact_resnet_names_follow_the_reference_code() -> None:
    names = set(preact_resnet18().state_dict())
    assert {"conv1.weight", "layer1.0.bn1.weight", "layer2.0.shortcut.0.weight", "bn.weight",
            "linear.weight"} <= names
    assert "bn1.weight" not in names  # pre-activation: no BN after the stem


def test_tiny_cnn_is_small_and_has_batchnorm() -> None:
    net = TinyCNN(10)
    assert sum(p.numel() for p in net.parameters()) < 200_000
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 4
    with pytest.raises(ValueError, match="width"):
        TinyCNN(10, width=0)


@pytest.mark.parametrize(("factory", "count", "n"), [(wrn_34_10, 17, 5), (wrn_28_4, 14, 4)])
def test_wrn_blocks_are_enumerated_as_in_cartl(factory, count: int, n: int) -> None:
    net = factory(num_classes=10)
    blocks = net.blocks()
    assert len(blocks) == count == 3 * n + 2
    assert all(type(b).__name__ == "WideBasicBlock" for b in blocks[: 3 * n])
    final = blocks[-2]
    assert isinstance(final, nn.Sequential) and final[0] is net.bn1
    assert isinstance(final[1], nn.ReLU)
    assert blocks[-1] is net.fc
    assert all(block is not net.conv1 for block in blocks)
    assert blocks[n] is net.block2.layer[0]


def test_wrn_widths_and_names() -> None:
    net = wrn_28_4()
    assert net.num_features == 256
    assert net.block1.layer[0].conv1.out_channels == 64
    names = set(net.state_dict())
    assert {"conv1.weight", "block1.layer.0.bn1.weight", "block1.layer.0.convShortcut.weight",
            "block3.layer.3.conv2.weight", "bn1.weight", "fc.weight"} <= names
    with pytest.raises(ValueError, match="6n \\+ 4"):
        WideResNet(depth=30)


def _small_wrn() -> WideResNet:
    torch.manual_seed(0)
    net = WideResNet(depth=16, widen_factor=1, num_classes=5)
    for module in net.modules():  # non-trivial BN statistics so eval mode matters
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return net.eval()


def test_wrn_forward_until_and_from_reproduce_forward() -> None:
    net = _small_wrn()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        expected = net(x)
        count = len(net.blocks())
        assert count == 8
        for index in list(range(count)) + [-1, -3]:
            h = net.forward_until(x, index)
            torch.testing.assert_close(net.forward_from(h, index), expected)
        assert net.forward_until(x, 0).shape == (2, 16, 16, 16)  # the stem's output
        torch.testing.assert_close(net.forward_until(x, count - 1), net.forward_features(x))
        assert net.forward_until(x, count - 2).shape == (2, 64, 4, 4)
        h = net.forward_until(x, 3)
        torch.testing.assert_close(net.blocks()[3](h), net.forward_until(x, 4))
    with pytest.raises(IndexError, match="out of range"):
        net.forward_until(x, count)


def test_wrn_average_branches_halves_the_sum() -> None:
    net = _small_wrn()
    block = net.blocks()[1]  # identity shortcut
    h = torch.rand(2, 16, 8, 8)
    with torch.no_grad():
        full = block(h)
        block.average_branches = True
        half = block(h)
    torch.testing.assert_close(half, 0.5 * full)
