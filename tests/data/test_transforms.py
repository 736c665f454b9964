"""Preparations and augmentations on uint8 images."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from lit_robust.data.transforms import (
    KeepSize,
    RandomCropFlip,
    Resize,
    ResizeCenterCrop,
    preparations,
    to_float,
    training_augmentation,
)

IMAGE = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(0))


def _reference_crops(
    image: torch.Tensor, size: int, padding: int, flip: bool
) -> list[torch.Tensor]:
    """Every output torchvision's RandomCrop(reflect) [+ horizontal flip] can produce."""
    padded = TF.pad(image, [padding], padding_mode="reflect")
    crops = []
    for top in range(padded.shape[-2] - size + 1):
        for left in range(padded.shape[-1] - size + 1):
            crop = padded[:, top:top + size, left:left + size]
            crops.append(crop)
            if flip:
                crops.append(TF.horizontal_flip(crop))
    return [to_float(crop) for crop in crops]


@pytest.mark.parametrize("flip", [True, False])
def test_random_crop_flip_matches_torchvision_reflect_crop(flip):
    torch.manual_seed(0)
    transform = RandomCropFlip(32, padding=4, flip=flip)
    references = _reference_crops(IMAGE, 32, 4, flip)
    outputs = [transform(IMAGE) for _ in range(200)]
    for output in outputs:
        assert output.dtype == torch.float32 and output.shape == (3, 32, 32)
        assert any(torch.equal(output, reference) for reference in references)
    distinct = {output.numpy().tobytes() for output in outputs}
    assert len(distinct) > 50  # the crops really are random
    unflipped = _reference_crops(IMAGE, 32, 4, flip=False)
    mirrored = sum(not any(torch.equal(o, r) for r in unflipped) for o in outputs)
    assert (60 < mirrored < 140) if flip else mirrored == 0


def test_random_crop_flip_rejects_impossible_crops():
    with pytest.raises(ValueError, match="cannot take a 48x48 crop"):
        RandomCropFlip(48, padding=4, flip=True)(IMAGE)


def test_to_float_scales_to_unit_interval_without_aliasing():
    image = torch.tensor([[[0, 255]]], dtype=torch.uint8).expand(3, 1, 2)
    out = to_float(image)
    assert out.dtype == torch.float32 and out.min() == 0 and out.max() == 1
    out.add_(1)
    assert image.max() == 255


def test_preparations():
    assert KeepSize(32)(IMAGE) is IMAGE
    with pytest.raises(ValueError, match="32x32, but image_size=64 with resize='none'"):
        KeepSize(64)(IMAGE)
    assert Resize(20)(torch.zeros(3, 50, 30, dtype=torch.uint8)).shape == (3, 20, 20)
    crop = ResizeCenterCrop(224, 256)
    wide = torch.zeros(3, 100, 300, dtype=torch.uint8)
    assert crop.output_size(100, 300) == (224, 224)
    assert crop(wide).shape == (3, 224, 224)
    train, evaluation = preparations("resize_center_crop", 224)
    assert train(wide) is wide and evaluation.resize_to == 256
    batch = torch.zeros(5, 3, 40, 40, dtype=torch.uint8)
    assert preparations("resize", 32)[0](batch).shape == (5, 3, 32, 32)


def test_random_resized_crop_augmentation_outputs_float_squares():
    augment = training_augmentation("resize_center_crop", 64, padding=4, flip=True)
    out = augment(torch.randint(0, 256, (3, 90, 120), dtype=torch.uint8))
    assert out.shape == (3, 64, 64) and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1
    assert isinstance(training_augmentation("resize", 32, 4, False), RandomCropFlip)
