"""The 224-px training transform of the transfer protocol is a random resized crop (+ flip),
as the transfer study's code (``RandomSizedCrop(224)``): checked on the transform the
DataModules build and on what it does to an image whose pixels name their position."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2

from lit_robust.data import CIFAR10DataModule, Flowers102DataModule
from tests.data import transfer_files as files
from tests.data.native_dataset_files import write_cifar_pickles


def _train_transform(tmp_path, name: str):
    if name == "flowers102":
        files.write_flowers102(tmp_path)
        dm = Flowers102DataModule(root=str(tmp_path), num_workers=0, val_size=0)
    else:  # CIFAR upsampled to 224 px, as the study's CIFAR targets
        write_cifar_pickles(tmp_path / "cifar-10-batches-py",
                            {f"data_batch_{i}": 4 for i in range(1, 6)} | {"test_batch": 4},
                            "labels", 10)
        dm = CIFAR10DataModule(root=str(tmp_path), image_size=224, resize="resize_center_crop",
                               num_workers=0, val_size=0)
    dm.setup("fit")
    return dm.train_dataset.transform


def _position_image(side: int = 256) -> torch.Tensor:
    """Channel 0 holds the row, channel 1 the column of every pixel (0..255)."""
    rows = torch.arange(side).view(-1, 1).expand(side, side)
    return torch.stack([rows, rows.t(), torch.zeros_like(rows)]).to(torch.uint8)


@pytest.mark.parametrize("name", ["flowers102", "cifar10"])
def test_224_px_training_transform_is_a_random_resized_crop_and_flip(tmp_path, name):
    transform = _train_transform(tmp_path, name)
    steps = transform.transforms
    crop = next(t for t in steps if isinstance(t, v2.RandomResizedCrop))
    assert list(crop.size) == [224, 224]
    assert crop.scale == (0.08, 1.0) and crop.ratio == pytest.approx((3 / 4, 4 / 3))
    assert any(isinstance(t, v2.RandomHorizontalFlip) for t in steps)
    # what it does: crops of random area (8% to 100% of the image) and shape, some flipped
    areas, ratios, flips = [], [], 0
    for _ in range(200):
        out = transform(_position_image()) * 255
        top, bottom = out[0, 0, :].mean(), out[0, -1, :].mean()
        first, last = out[1, :, 0].mean(), out[1, :, -1].mean()
        flips += int(first > last)
        height, width = bottom - top + 1, (last - first).abs() + 1
        areas.append(float(height * width) / 256 ** 2)
        ratios.append(float(width / height))
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    assert min(areas) < 0.2 and max(areas) > 0.8
    assert min(ratios) < 0.85 and max(ratios) > 1.15
    assert 60 < flips < 140
