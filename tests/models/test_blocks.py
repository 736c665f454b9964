"""Block enumeration, split forward passes, last-k freezing and residual averaging."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from lit_robust.models.blocks import (
    averages_branches,
    block_count,
    blocks,
    extractor_batchnorms,
    forward_from,
    forward_until,
    freeze_all_but_last,
    set_average_branches,
)
from lit_robust.models.normalize import NormalizedClassifier
from lit_robust.models.zoo import build_backbone


@pytest.mark.parametrize(("name", "count"), [
    ("wrn_28_4", 14), ("wrn_34_10", 17), ("resnet18", 9), ("resnet34", 17), ("resnet50", 17),
    ("preact_resnet18", 10), ("tv_resnet50", 17), ("tiny_cnn", 5),
])
def test_block_counts(name: str, count: int) -> None:
    assert block_count(build_backbone(name, num_classes=10)) == count


def test_wide_resnet_blocks_are_the_papers() -> None:
    net = build_backbone("wrn_28_4", num_classes=10)
    listed = blocks(net)
    assert listed[0] is net.block1.layer[0] and listed[11] is net.block3.layer[3]
    assert list(listed[12]) == [net.bn1, net.relu] and listed[13] is net.fc
    assert [type(b) for b in listed] == [type(b) for b in net.blocks()]


@pytest.mark.parametrize("name", ["resnet18", "preact_resnet18", "tiny_cnn", "wrn_28_4"])
def test_split_forward_passes_reproduce_the_logits_at_every_block(name: str) -> None:
    net = build_backbone(name, num_classes=7).eval()
    model = NormalizedClassifier(net, mean=[0.4] * 3, std=[0.2] * 3).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        for index in range(block_count(model)):
            h = forward_until(model, x, index)
            torch.testing.assert_close(forward_from(model, h, index), expected, rtol=0,
                                       atol=1e-5)
        assert forward_until(model, x, -1).shape == (2, net.num_features)
        torch.testing.assert_close(forward_until(model, x, -1), model.features(x))


def test_split_matches_the_wide_resnets_own_methods() -> None:
    net = build_backbone("wrn_28_4", num_classes=10).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        for index in (0, 5, 12, 13, -3):
            torch.testing.assert_close(forward_until(net, x, index), net.forward_until(x, index))


def test_torchvision_resnet50_split_at_its_stem_and_head() -> None:
    net = build_backbone("tv_resnet50", num_classes=5).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        h = forward_until(net, x, 0)
        assert h.shape == (1, 64, 16, 16)  # after the 7x7 stride-2 conv and the max-pool
        torch.testing.assert_close(forward_from(net, h, 0), net(x), rtol=0, atol=1e-5)
        torch.testing.assert_close(forward_from(net, forward_until(net, x, 16), 16), net(x))


@pytest.mark.parametrize("k", [0, 10, -1])
def test_out_of_range_k_names_the_block_count(k: int) -> None:
    net = build_backbone("resnet18", num_classes=10)
    with pytest.raises(ValueError, match=r"CifarResNet has 9 blocks.*1 <= k <= 9"):
        freeze_all_but_last(net, k)


def test_a_model_without_block_enumeration_is_a_clear_error() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    with pytest.raises(TypeError, match="Sequential has no block enumeration.*register_block"):
        freeze_all_but_last(net, 1)


def _names(model: nn.Module, params: list[nn.Parameter]) -> set[str]:
    ids = {id(p) for p in params}
    return {name for name, p in model.named_parameters() if id(p) in ids}


def test_freeze_all_but_last_trains_exactly_the_last_k_blocks() -> None:
    model = NormalizedClassifier(build_backbone("resnet18", num_classes=10), [0.5] * 3, [0.2] * 3)
    trainable = freeze_all_but_last(model, 3)
    names = _names(model, trainable)
    assert names == {n for n, p in model.named_parameters()
                     if n.startswith(("net.layer4.", "net.linear."))}
    assert names == {n for n, p in model.named_parameters() if p.requires_grad}
    # k = L trains every block but never the stem
    all_blocks = freeze_all_but_last(model, 9)
    stem = {"net.conv1.weight", "net.bn1.weight", "net.bn1.bias"}
    assert _names(model, all_blocks) == {n for n, _ in model.named_parameters()} - stem


def test_freeze_bn_affine_freezes_exactly_gamma_and_beta_of_the_tuned_blocks() -> None:
    net = build_backbone("preact_resnet18", num_classes=10)
    # the last 3 of PreAct ResNet-18's blocks: layer4.1, the final BN + ReLU, the classifier
    with_affine = _names(net, freeze_all_but_last(net, 3))
    without = _names(net, freeze_all_but_last(net, 3, freeze_bn_affine=True))
    assert with_affine - without == {"bn.weight", "bn.bias", "layer4.1.bn1.weight",
                                     "layer4.1.bn1.bias", "layer4.1.bn2.weight",
                                     "layer4.1.bn2.bias"}
    assert without == {"layer4.1.conv1.weight", "layer4.1.conv2.weight", "linear.weight",
                       "linear.bias"}


def test_extractor_batchnorms_are_those_outside_the_last_k_blocks() -> None:
    net = build_backbone("resnet18", num_classes=10)
    extractor = extractor_batchnorms(net, 2)
    all_bns = [m for m in net.modules() if isinstance(m, _BatchNorm)]
    tuned = {id(m) for m in net.layer4[1].modules()}
    assert [id(m) for m in extractor] == [id(m) for m in all_bns if id(m) not in tuned]
    assert extractor[0] is net.bn1 and net.layer4[0].shortcut[1] in extractor


@pytest.mark.parametrize(("name", "block"), [
    ("resnet18", "layer4.0"), ("resnet50", "layer2.0"), ("preact_resnet18", "layer3.0"),
    ("wrn_28_4", "block2.layer.1"), ("tv_resnet50", "layer1.1"),
])
def test_averaged_residual_blocks_return_half_the_sum(name: str, block: str) -> None:
    net = build_backbone(name, num_classes=10).eval()
    module = net.get_submodule(block)
    channels = next(m for m in module.modules() if isinstance(m, nn.Conv2d)).in_channels
    x = torch.randn(2, channels, 8, 8)
    with torch.no_grad():
        summed = module(x)
        assert set_average_branches(module, True) and averages_branches(module)
        averaged = module(x)
        set_average_branches(module, False)
        restored = module(x)
    # ½·a + ½·b = ½·(a + b), also through the final ReLU of post-activation blocks
    torch.testing.assert_close(averaged, 0.5 * summed, rtol=0, atol=1e-6)
    assert torch.equal(restored, summed) and not averages_branches(module)


def test_non_residual_blocks_are_left_alone() -> None:
    head = nn.Linear(4, 2)
    assert not set_average_branches(head, True)
    assert not averages_branches(head)
