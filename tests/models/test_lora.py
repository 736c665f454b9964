"""LoRA layers: the layouts, exact merge and removal, the candidate layers of CNNs and timm
models, the path switch, and clear errors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from lit_robust.models.lora import (
    LoRAConv2d,
    LoRALinear,
    add_lora,
    lora_candidates,
    lora_enabled,
    lora_layers,
    merge_lora,
    remove_lora,
)
from lit_robust.models.zoo import build_classifier

TINY_VIT = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}
TINY_CONVNEXT = {"depths": [1, 1, 1, 1], "dims": [8, 16, 32, 64]}


def tiny_models() -> dict[str, nn.Module]:
    """Randomly initialized models of every family LoRA adapts (nothing is downloaded)."""
    torch.manual_seed(0)
    plain = ([0.0] * 3, [1.0] * 3)
    return {
        "tiny_cnn": build_classifier("tiny_cnn", 10, *plain),
        "resnet18": build_classifier("resnet18", 10, *plain),
        "vit": build_classifier("timm/vit_tiny_patch16_224", 10, *plain, **TINY_VIT),
        "convnext": build_classifier("timm/convnext_atto", 10, *plain, **TINY_CONVNEXT),
    }


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    return tiny_models()


def _randomize_updates(model: nn.Module) -> None:
    """Give every B a non-zero value, so the updates change the outputs."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in lora_layers(model):
            layer.lora_B.copy_(0.1 * torch.randn(layer.lora_B.shape, generator=generator))


@pytest.mark.parametrize("name", ["tiny_cnn", "resnet18", "vit", "convnext"])
def test_merge_gives_identical_logits_and_plain_layers(models, name) -> None:
    model = copy.deepcopy(models[name]).eval()
    original_keys = set(model.state_dict())
    add_lora(model, rank=4, alpha=2.0)  # scale α/r = 1/2: a merge must apply it too
    _randomize_updates(model)
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        adapted = model(x)
        merged = merge_lora(copy.deepcopy(model))
        assert torch.equal(merged(x), adapted)  # bit for bit, not approximately
        assert not torch.allclose(models[name].eval()(x), adapted)  # the update mattered
    assert not lora_layers(merged) and set(merged.state_dict()) == original_keys


@pytest.mark.parametrize("name", ["tiny_cnn", "vit"])
def test_a_new_branch_and_a_removed_one_compute_the_original(models, name) -> None:
    model = copy.deepcopy(models[name]).eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        before = model(x)
        add_lora(model, rank=2)
        assert torch.equal(model(x), before)  # B = 0: W + 0 is W
        _randomize_updates(model)
        with lora_enabled(model, False):
            assert torch.equal(model(x), before)
        assert torch.equal(remove_lora(model)(x), before)


def test_conv_layout_is_loralibs() -> None:
    conv = nn.Conv2d(6, 8, 3, groups=2, bias=False)
    layer = LoRAConv2d(conv, rank=4, alpha=1.0, init_a="normal")
    assert layer.lora_A.shape == (4 * 3, 6 * 3)  # (r·k, C_in·k)
    assert layer.lora_B.shape == (8 // 2 * 3, 4 * 3)  # (C_out/groups·k, r·k)
    assert layer.delta_weight().shape == conv.weight.shape
    assert layer.scaling == 1.0 / 4 and torch.count_nonzero(layer.lora_B) == 0
    linear = LoRALinear(nn.Linear(5, 7), rank=3)
    assert linear.lora_A.shape == (3, 5) and linear.lora_B.shape == (7, 3)


def test_dropout_applies_to_the_branch_only_while_training() -> None:
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(16, 4), rank=2, dropout=0.5)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.rand(8, 16)
    layer.eval()
    merged = layer.merged()
    assert torch.equal(layer(x), merged(x))
    layer.train()
    assert not torch.allclose(layer(x), merged(x))


def test_candidates_are_projections_mlps_and_convs_never_the_head_or_stem(models) -> None:
    vit = lora_candidates(models["vit"])
    assert vit == [f"net.blocks.{b}.{m}" for b in range(2)
                   for m in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")]
    resnet = lora_candidates(models["resnet18"])
    assert "net.conv1" not in resnet and "net.linear" not in resnet
    assert "net.layer2.0.shortcut.0" in resnet and len(resnet) == 19
    convnext = lora_candidates(models["convnext"])
    assert "net.stem.0" not in convnext and "net.head.fc" not in convnext
    assert "net.stages.0.blocks.0.conv_dw" in convnext
    assert lora_candidates(models["vit"], include=["*.attn.qkv"]) == [
        "net.blocks.0.attn.qkv", "net.blocks.1.attn.qkv"]
    assert "net.conv1" in lora_candidates(models["resnet18"], skip_first_conv=False)


@pytest.mark.parametrize("rank", [0, -2])
def test_rank_must_be_positive(rank) -> None:
    with pytest.raises(ValueError, match="the LoRA rank must be a positive integer"):
        add_lora(build_classifier("tiny_cnn", 10, [0.0], [1.0]), rank=rank)


def test_a_model_without_eligible_layers_is_refused() -> None:
    class HeadOnly(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(3, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.pool(x).flatten(1))

    with pytest.raises(ValueError, match=r"LoRA found no eligible layer .* the model's are "
                                         r"\['fc'\]"):
        add_lora(HeadOnly())
