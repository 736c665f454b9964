"""Readers for the published corruption benchmarks in their native layouts.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations", ICLR 2019. Layouts, under ``root`` (default: ``$LIT_ROBUST_DATA``, else
``./data``):

- CIFAR-10-C / CIFAR-100-C: ``CIFAR-10-C/<corruption>.npy`` (or ``CIFAR-100-C/``), uint8 of
  shape (5·N, 32, 32, 3) holding severities 1–5 of the N = 10,000 test images one after the
  other, and ``labels.npy`` (5·N labels). Arrays are memory-mapped: only the images asked for
  are read.
- Tiny-ImageNet-C: ``Tiny-ImageNet-C/<corruption>/<severity>/<wnid>/*.JPEG`` (64×64). Class
  indices follow ``class_names`` (the wnids in the model's output order) or, by default, the
  sorted wnids, as ``torchvision.datasets.ImageFolder`` numbers them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from lit_robust.evaluation.corruptions.generate import CORRUPTIONS, SEVERITIES
from lit_robust.paths import data_root, resolve_path

CorruptionDataset = Literal["cifar10", "cifar100", "tinyimagenet"]
"""The datasets with published corrupted test sets (CIFAR-10-C, CIFAR-100-C, Tiny-ImageNet-C)."""

FOLDERS: dict[str, str] = {
    "cifar10": "CIFAR-10-C", "cifar100": "CIFAR-100-C", "tinyimagenet": "Tiny-ImageNet-C",
}
_IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}


class CorruptedImages:
    """One corruption at one severity: labels up front, images read on demand.

    Args:
        labels: class index of every image, shape (N,).
        read: returns uint8 images of shape (n, C, H, W) for a list of positions.
    """

    def __init__(self, labels: Tensor, read: Callable[[list[int]], Tensor]) -> None:
        self.labels = labels
        self._read = read

    def __len__(self) -> int:
        return len(self.labels)

    def images(self, positions: Sequence[int]) -> Tensor:
        """uint8 images of shape (n, C, H, W) at ``positions``."""
        return self._read(list(positions))


def default_root() -> Path:
    """``$LIT_ROBUST_DATA`` if set, else ``./data`` (relative to the start directory)."""
    return data_root()


def open_corrupted(
    dataset: CorruptionDataset,
    corruption: str,
    severity: int,
    root: str | Path | None = None,
    class_names: Sequence[str] | None = None,
) -> CorruptedImages:
    """Open the published images of ``dataset`` under one corruption and severity.

    Args:
        dataset: ``"cifar10"``, ``"cifar100"`` or ``"tinyimagenet"``.
        corruption: one of the 15 benchmark corruptions.
        severity: 1 to 5.
        root: folder holding ``CIFAR-10-C/``, ``CIFAR-100-C/`` or ``Tiny-ImageNet-C/``.
        class_names: Tiny-ImageNet-C only: wnids in the model's class order (default: sorted).

    Raises:
        ValueError: for an unknown dataset, corruption or severity.
        FileNotFoundError: when the files are missing; the message shows the expected layout.
    """
    if dataset not in FOLDERS:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {list(FOLDERS)}")
    if corruption not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {corruption!r}; choose from {list(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of 1, 2, 3, 4, 5, got {severity}")
    folder = (resolve_path(root) if root is not None else default_root()) / FOLDERS[dataset]
    if dataset == "tinyimagenet":
        return _open_folder(folder, corruption, severity, class_names)
    return _open_npy(folder, dataset, corruption, severity)


def _open_npy(folder: Path, dataset: str, corruption: str, severity: int) -> CorruptedImages:
    images_file, labels_file = folder / f"{corruption}.npy", folder / "labels.npy"
    for path in (images_file, labels_file):
        if not path.is_file():
            raise FileNotFoundError(
                f"{FOLDERS[dataset]}: {path} not found. Expected the published layout "
                f"{folder}/<corruption>.npy (uint8, shape (50000, 32, 32, 3): severities 1-5 "
                f"of the 10,000 test images in order) and {folder}/labels.npy; download "
                f"{FOLDERS[dataset]}.tar and extract it under {folder.parent}"
            )
    images = np.load(images_file, mmap_mode="r")
    labels = np.load(labels_file, mmap_mode="r")
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) % len(SEVERITIES) != 0:
        raise ValueError(f"{images_file} has shape {images.shape}; expected (5·N, H, W, 3)")
    if len(labels) != len(images):
        raise ValueError(f"{labels_file} has {len(labels)} labels for {len(images)} images")
    per_severity = len(images) // len(SEVERITIES)
    start = (severity - 1) * per_severity
    block = images[start:start + per_severity]

    def read(positions: list[int]) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(block[positions])).permute(0, 3, 1, 2)

    return CorruptedImages(torch.from_numpy(labels[start:start + per_severity].astype(np.int64)),
                           read)


def _open_folder(folder: Path, corruption: str, severity: int,
                 class_names: Sequence[str] | None) -> CorruptedImages:
    directory = folder / corruption / str(severity)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"Tiny-ImageNet-C: {directory} not found. Expected the published layout "
            f"{folder}/<corruption>/<severity 1-5>/<wnid>/*.JPEG; download Tiny-ImageNet-C.tar "
            f"and extract it under {folder.parent}"
        )
    found = sorted(p.name for p in directory.iterdir() if p.is_dir())
    names = list(class_names) if class_names is not None else found
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(found) - set(index))
    if unknown:
        raise ValueError(f"{directory} has classes missing from class_names: {unknown[:5]}")
    paths, labels = [], []
    for name in found:
        for path in sorted((directory / name).iterdir()):
            if path.suffix.lower() in _IMAGE_SUFFIXES:
                paths.append(path)
                labels.append(index[name])
    if not paths:
        raise FileNotFoundError(f"Tiny-ImageNet-C: no images in {directory}/<wnid>/")

    def read(positions: list[int]) -> Tensor:
        arrays = []
        for position in positions:
            with Image.open(paths[position]) as image:
                arrays.append(np.asarray(image.convert("RGB")))
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)

    return CorruptedImages(torch.tensor(labels, dtype=torch.long), read)
