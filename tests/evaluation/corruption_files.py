"""Small CIFAR-10-C and Tiny-ImageNet-C files in their published layouts, for the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

PER_SEVERITY = 6


def write_cifar_c(root: Path, folder: str = "CIFAR-10-C", corruption: str = "fog") -> None:
    """Native CIFAR-10-C layout: 5 severities × N images, pixel value = 10·severity + image."""
    target = root / folder
    target.mkdir(parents=True)
    images = np.zeros((5 * PER_SEVERITY, 32, 32, 3), dtype=np.uint8)
    for severity in range(5):
        for i in range(PER_SEVERITY):
            images[severity * PER_SEVERITY + i] = 10 * (severity + 1) + i
    np.save(target / f"{corruption}.npy", images)
    np.save(target / "labels.npy", np.tile(np.arange(PER_SEVERITY) % 3, 5).astype(np.uint8))


def write_tiny_imagenet_c(root: Path, corruption: str = "fog", severity: int = 2) -> None:
    """Native Tiny-ImageNet-C layout with two flat-grey JPEGs per class: grey level
    20 + 40·k + 10·i for image i of the k-th wnid written (n02 first, then n01)."""
    for k, wnid in enumerate(["n02", "n01"]):
        folder = root / "Tiny-ImageNet-C" / corruption / str(severity) / wnid
        folder.mkdir(parents=True)
        for i in range(2):
            value = 20 + 40 * k + 10 * i
            Image.new("RGB", (64, 64), (value, value, value)).save(folder / f"val_{i}.JPEG")
