"""Normalization inside the model and the pixel-space classifier wrapper."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from lit_robust.models import Normalize, NormalizedClassifier, TinyCNN, build_backbone


def test_normalize_matches_hand_computation() -> None:
    norm = Normalize((0.5, 0.25, 0.0), (0.5, 0.25, 2.0))
    x = torch.tensor([1.0, 0.5, 1.0]).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    out = norm(x)
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([1.0, 1.0, 0.5]))
    assert norm.mean.shape == (1, 3, 1, 1)
    assert set(norm.state_dict()) == {"mean", "std"}


@pytest.mark.parametrize("channels", [1, 4])
def test_normalize_any_channel_count(channels: int) -> None:
    norm = Normalize([0.1] * channels, [0.2] * channels)
    x = torch.rand(2, channels, 5, 5)
    torch.testing.assert_close(norm(x), (x - 0.1) / 0.2)


def test_single_value_applies_to_every_channel() -> None:
    x = torch.rand(2, 3, 4, 4)
    torch.testing.assert_close(Normalize((0.0,), (1.0,))(x), x)


def test_normalize_rejects_bad_statistics_and_inputs() -> None:
    with pytest.raises(ValueError, match="same non-zero number"):
        Normalize((0.5, 0.5), (0.2,))
    with pytest.raises(ValueError, match="positive"):
        Normalize((0.5,), (0.0,))
    with pytest.raises(ValueError, match="3 channels but the input has 1"):
        Normalize((0.5,) * 3, (0.2,) * 3)(torch.rand(2, 1, 4, 4))


def test_normalize_follows_the_module_dtype() -> None:
    norm = Normalize((0.5,), (0.2,)).to(torch.float64)
    assert norm(torch.rand(1, 3, 2, 2, dtype=torch.float64)).dtype == torch.float64


def test_normalized_classifier_composes_normalize_and_net() -> None:
    torch.manual_seed(0)
    net = TinyCNN(10, width=4).eval()
    model = NormalizedClassifier(net, (0.4, 0.5, 0.6), (0.2, 0.3, 0.4))
    x = torch.rand(3, 3, 32, 32)
    expected = net((x - torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1))
                   / torch.tensor([0.2, 0.3, 0.4]).view(1, 3, 1, 1))
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected.detach())
        torch.testing.assert_close(model.features(x), net.forward_features(model.normalize(x)))
    assert model.net is net
    assert {"normalize.mean", "normalize.std", "net.linear.weight"} <= set(model.state_dict())


@pytest.mark.parametrize(
    "net",
    [
        pytest.param(lambda: build_backbone("timm/resnet10t", 5), id="timm"),
        pytest.param(lambda: torchvision.models.resnet18(num_classes=5), id="torchvision"),
    ],
)
def test_features_are_the_head_input_for_external_backbones(net) -> None:
    torch.manual_seed(0)
    model = NormalizedClassifier(net().eval(), (0.5,), (0.25,))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        features = model.features(x)
        logits = model(x)
    head = model.net.fc
    assert isinstance(head, nn.Linear) and features.shape == (2, head.in_features)
    torch.testing.assert_close(head(features), logits)
