"""Parameter selections: what trains under LoRA, adapters and bias-only tuning, checked by an
optimizer step, and their errors."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lit_robust.models.peft import Adapters, BiasOnly, LoRA, trainable_parameter_count
from lit_robust.models.zoo import build_classifier
from tests.models.test_lora import TINY_CONVNEXT, TINY_VIT


def _step(model: nn.Module) -> dict[str, torch.Tensor]:
    """One SGD step (with weight decay, which would move any parameter that has a gradient or
    not) on random data; returns the parameters before it."""
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5,
                                weight_decay=0.1)
    generator = torch.Generator().manual_seed(0)
    x, y = torch.rand(4, 3, 32, 32, generator=generator), torch.arange(4)
    model.train()
    F.cross_entropy(model(x), y).backward()
    optimizer.step()
    return before


def _changed(model: nn.Module, before: dict[str, torch.Tensor]) -> set[str]:
    return {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}


def test_bias_only_trains_only_biases_and_the_head() -> None:
    torch.manual_seed(0)
    model = BiasOnly().apply(build_classifier("timm/vit_tiny_patch16_224", 10, [0.5] * 3,
                                              [0.5] * 3, **TINY_VIT))
    before = _step(model)
    changed = _changed(model, before)
    biases = {name for name in before if name.endswith(".bias")}
    assert changed == biases | {"net.head.weight"}
    assert "net.blocks.0.norm1.bias" in changed and "net.blocks.0.attn.qkv.bias" in changed


def test_lora_trains_only_the_factors_and_the_head() -> None:
    torch.manual_seed(0)
    model = LoRA(rank=2).apply(build_classifier("tiny_cnn", 10, [0.0] * 3, [1.0] * 3))
    before = _step(model)
    changed = _changed(model, before)
    assert changed == {name for name in before if "lora_" in name} | {
        "net.linear.weight", "net.linear.bias"}
    assert len(changed) == 3 * 2 + 2  # three convolutions after the stem
    trainable, total = trainable_parameter_count(model)
    assert trainable == sum(before[name].numel() for name in changed) and total > trainable


def test_also_train_adds_parameters_by_name() -> None:
    model = LoRA(rank=2, also_train=["*.bn.*"]).apply(
        build_classifier("tiny_cnn", 10, [0.0] * 3, [1.0] * 3))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert "net.layer1.bn.weight" in trainable and "net.layer1.conv.weight" not in trainable


def test_adapters_start_as_the_identity_and_only_they_train() -> None:
    torch.manual_seed(0)
    original = build_classifier("timm/convnext_atto", 10, [0.5] * 3, [0.5] * 3, **TINY_CONVNEXT)
    model = Adapters(reduction=4).apply(copy.deepcopy(original))
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model.eval()(x), original.eval()(x))
    before = _step(model)
    changed = _changed(model, before)
    assert changed and all(".up." in n or ".down." in n or n.startswith("net.head.fc")
                           for n in changed)
    assert any(".down." in n for n in changed)  # both projections learn (not RoLI's zero init)


def test_adapters_on_a_network_without_mlp_blocks_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"Adapters found no module matching \['\*\.mlp'\].*"
                                         "use LoRA or BiasOnly"):
        Adapters().apply(build_classifier("tiny_cnn", 10, [0.0] * 3, [1.0] * 3))


def test_bad_settings_fail_when_the_selection_is_made() -> None:
    with pytest.raises(ValueError, match="the LoRA rank must be a positive integer"):
        LoRA(rank=0)
    with pytest.raises(ValueError, match="reduction must be >= 1"):
        Adapters(reduction=0)
