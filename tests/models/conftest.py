"""Shared fixtures for the model tests: real CIFAR-10 test images and the shipped ResNet-18."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms.functional import to_tensor

from tests.shared_paths import shared_data_root

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)


def cifar10_test_subset(per_class: int) -> tuple[Tensor, Tensor]:
    """The first ``per_class`` files (sorted by name) of each class of the CIFAR-10 JPEG test
    split under ``$LIT_ROBUST_DATA``, as [0, 1] tensors and labels in sorted class order."""
    test_dir = shared_data_root() / "cifar10-jpeg" / "test"
    if not test_dir.is_dir():
        pytest.fail(f"CIFAR-10 JPEG test images not found at {test_dir}")
    classes = sorted(p.name for p in test_dir.iterdir() if p.is_dir())
    assert tuple(classes) == CIFAR10_CLASSES
    images, labels = [], []
    for label, name in enumerate(classes):
        for file in sorted((test_dir / name).iterdir())[:per_class]:
            with Image.open(file) as image:
                images.append(to_tensor(image.convert("RGB")))
            labels.append(label)
    return torch.stack(images), torch.tensor(labels)


@pytest.fixture(scope="session")
def cifar10_test_1000() -> tuple[Tensor, Tensor]:
    """1,000 real CIFAR-10 test images: the first 100 files of each class."""
    return cifar10_test_subset(per_class=100)


@pytest.fixture(scope="session")
def autoattack_resnet18_path() -> Path:
    """The standard-trained CIFAR-10 ResNet-18 state dict shipped inside ``pyautoattack``."""
    path = importlib.resources.files("pyautoattack") / "examples" / "model_test.pt"
    assert path.is_file(), f"pyautoattack does not ship {path}"
    return Path(str(path))
