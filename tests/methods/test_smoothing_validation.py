"""Validation of the certified-training methods measures the smoothed classifier: noise of the
configured σ on the pixels, and a certified radius that counts only for correct predictions."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from lit_robust.methods import GaussianAugmentation

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log")  # no Trainer


class ConstantRecorder(nn.Module):
    """Predicts class 0 (by a wide margin) for every image and keeps every input it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        self.inputs.append(x.detach().clone())
        logits = torch.zeros(x.shape[0], 3)
        logits[:, 0] = 10.0
        return logits


def _validated(sigma: float, labels: list[int]) -> tuple[GaussianAugmentation, ConstantRecorder]:
    method = GaussianAugmentation(backbone="tiny_cnn", num_classes=3, mean=[0.5] * 3,
                                  std=[0.25] * 3, sigma=sigma, val_certify_images=len(labels),
                                  val_certify_n0=10, val_certify_n=50)
    method.configure_model()
    recorder = ConstantRecorder()
    method.model = recorder
    x = torch.full((len(labels), 3, 8, 8), 0.5)
    torch.manual_seed(0)
    method.validation_step((x, torch.tensor(labels)), 0)
    return method, recorder


@pytest.mark.parametrize("sigma", [0.25, 1.0])
def test_noisy_validation_adds_pixel_noise_of_sigma(sigma: float) -> None:
    _, recorder = _validated(sigma, [0] * 64)
    clean, noisy = recorder.inputs[0], recorder.inputs[1]  # the clean pass, then the noisy one
    assert torch.equal(clean, torch.full_like(clean, 0.5))
    noise = noisy - clean
    assert noise.std().item() == pytest.approx(sigma, rel=0.05)  # 12,288 draws: ±1.3% (1 SE)
    assert noise.min() < 0 and noisy.max() > 1  # not clamped to [0, 1]


def test_validation_acr_gives_zero_to_wrong_predictions() -> None:
    """The constant classifier is certified for class 0 with the same radius everywhere: the
    images labelled 0 count it, the images labelled 1 are wrong and count 0 (a plant that
    averages every radius would report the full radius for all of them)."""
    right, _ = _validated(0.5, [0, 0])
    wrong, _ = _validated(0.5, [1, 1])
    mixed, _ = _validated(0.5, [0, 1])
    radius = right.val_acr.compute().item()
    assert radius > 0 and right.val_certified_acc.compute().item() == 1.0
    assert wrong.val_acr.compute().item() == 0.0
    assert wrong.val_certified_acc.compute().item() == 0.0
    assert mixed.val_acr.compute().item() == pytest.approx(radius / 2)
