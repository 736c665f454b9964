"""SVHN (Netzer et al., 2011), cropped digits: torchvision's ``.mat`` files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
import torch
from torchvision import datasets

from lit_robust.data.base import RobustDataModule
from lit_robust.data.images import ImageSplit
from lit_robust.data.layouts import DatasetLayout, Split


def read_svhn_mat(folder: Path, split: Split) -> ImageSplit:
    """Read ``<split>_32x32.mat``: ``X`` of shape (32, 32, 3, N), ``y`` (N, 1) with 10 for 0."""
    content = scipy.io.loadmat(str(folder / f"{split}_32x32.mat"))
    images = np.ascontiguousarray(np.transpose(content["X"], (3, 2, 0, 1)), dtype=np.uint8)
    labels = content["y"].astype(np.int64).reshape(-1) % 10
    return ImageSplit(torch.from_numpy(labels), images=torch.from_numpy(images))


class SVHNDataModule(RobustDataModule):
    """SVHN: 10 digit classes (label 0 is the digit 0), 73,257 training and 26,032 test images
    of 32×32 px; the ``extra`` split is not used.

    Reads torchvision's ``train_32x32.mat`` and ``test_32x32.mat``; ``download=True`` fetches
    them with torchvision into ``<root>/svhn``. Digits are not mirrored during augmentation.
    See :class:`RobustDataModule` for the arguments.
    """

    dataset_name = "SVHN"
    class_names = tuple(str(digit) for digit in range(10))
    mean = (0.4377, 0.4438, 0.4728)
    std = (0.1980, 0.2010, 0.1970)
    default_image_size = 32
    horizontal_flip = False
    layouts = (
        DatasetLayout("torchvision's SVHN .mat files", "{train_32x32.mat, test_32x32.mat}",
                      ("svhn", "SVHN"), ("train_32x32.mat", "test_32x32.mat"), read_svhn_mat),
    )

    def download_to(self, root: Path) -> None:
        for split in ("train", "test"):
            datasets.SVHN(str(root / "svhn"), split=split, download=True)
