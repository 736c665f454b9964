from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor
from torchvision.io import read_image

from lit_robust.evaluation.corruptions.generate import CORRUPTIONS, corrupt
from lit_robust.evaluation.corruptions.params import preset_for_size

RANDOM = ("gaussian_noise", "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "snow",
          "frost", "fog", "elastic_transform")


def _real_images(data_root: Path, size: int) -> Tensor:
    if size == 32:
        files = sorted((data_root / "cifar10-jpeg" / "test").glob("*/*.jpg"))[::1000][:4]
    else:
        files = sorted((data_root / "tiny-imagenet-200" / "val" / "images").glob("*.JPEG"))[:4]
    images = [read_image(str(f)).expand(3, -1, -1).float() / 255 for f in files]
    assert len(images) == 4 and images[0].shape[-1] == size
    return torch.stack(images)


@pytest.mark.parametrize("size", [32, 64])
def test_every_corruption_and_severity_runs_and_stays_in_range(data_root: Path,
                                                               size: int) -> None:
    x = _real_images(data_root, size)[:2]
    for corruption in CORRUPTIONS:
        for severity in range(1, 6):
            out = corrupt(x, corruption, severity, torch.Generator().manual_seed(severity))
            assert out.shape == x.shape and out.dtype == x.dtype, corruption
            assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1, corruption
            assert not torch.equal(out, x) or (corruption, severity) == ("elastic_transform", 1)


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_same_seed_same_output_other_seed_other_noise(corruption: str) -> None:
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    first = corrupt(x, corruption, 3, torch.Generator().manual_seed(7))
    again = corrupt(x, corruption, 3, torch.Generator().manual_seed(7))
    other = corrupt(x, corruption, 3, torch.Generator().manual_seed(8))
    assert torch.equal(first, again)
    assert torch.equal(first, other) != (corruption in RANDOM)


@pytest.mark.parametrize("corruption", ["gaussian_noise", "impulse_noise", "defocus_blur",
                                        "zoom_blur", "fog", "brightness", "contrast",
                                        "pixelate", "jpeg_compression"])
def test_severity_is_monotone_in_pixel_distance(data_root: Path, corruption: str) -> None:
    x = _real_images(data_root, 32)
    distances = [
        (corrupt(x, corruption, s, torch.Generator().manual_seed(0)) - x).pow(2).mean().sqrt()
        for s in range(1, 6)
    ]
    assert all(a < b for a, b in zip(distances, distances[1:], strict=False)), distances


def test_closed_forms_by_hand() -> None:
    x = torch.tensor([0.2, 0.4, 0.6, 0.8]).view(1, 1, 2, 2).expand(1, 3, 2, 2).clone()
    # contrast (CIFAR severity 1, c = 0.75) around the mean 0.5
    assert torch.allclose(corrupt(x, "contrast", 1), (x - 0.5) * 0.75 + 0.5)
    # brightness on grey pixels adds c to every channel (HSV value), CIFAR severity 5: 0.3
    assert torch.allclose(corrupt(x, "brightness", 5), (x + 0.3).clamp(max=1))
    # brightness keeps hue and saturation: the colour is scaled by V' / V
    colour = torch.tensor([0.5, 0.25, 0.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert torch.allclose(corrupt(colour, "brightness", 2), colour * 0.6 / 0.5)


def test_pixelate_matches_pil_box_resize() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    reference = Image.fromarray(image).resize((24, 24), Image.BOX).resize((32, 32), Image.BOX)
    ours = corrupt(x, "pixelate", 4)[0].permute(1, 2, 0).numpy() * 255  # c = 0.75 → 24 px
    # PIL rounds to uint8 after each pass: at most one grey level per pass apart
    assert np.abs(ours - np.asarray(reference, dtype=np.float64)).max() <= 1.01


def test_jpeg_matches_pil_round_trip() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=80)
    reference = np.asarray(Image.open(buffer), dtype=np.float64) / 255
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    ours = corrupt(x, "jpeg_compression", 1)[0].permute(1, 2, 0).double().numpy()
    assert np.allclose(ours, reference)


def test_impulse_noise_rate() -> None:
    x = torch.full((4, 3, 64, 64), 0.5)
    out = corrupt(x, "impulse_noise", 5, torch.Generator().manual_seed(0))  # 0.14 at 64 px
    replaced = out != 0.5
    assert replaced.float().mean().item() == pytest.approx(0.14, abs=0.01)
    assert (out[replaced] == 1).float().mean().item() == pytest.approx(0.5, abs=0.05)


def test_preset_choice_and_errors() -> None:
    assert preset_for_size(32, 32) == "cifar"
    assert preset_for_size(64, 64) == "tinyimagenet"
    assert preset_for_size(224, 224) == "imagenet"
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(x, "speckle", 1)
    with pytest.raises(ValueError, match="severity"):
        corrupt(x, "fog", 6)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        corrupt(x * 255, "fog", 1)
    with pytest.raises(ValueError, match="preset"):
        corrupt(x, "fog", 1, preset="svhn")
