"""What the 12 downstream sets of the transfer-learning protocol share.

Salman et al., "Do Adversarially Robust ImageNet Models Transfer Better?" (NeurIPS 2020) and
Vaishnavi et al., "A Study of the Effects of Transfer Learning on Adversarial Robustness"
(TMLR): ImageNet-pre-trained models are fine-tuned at 224×224 px, training images go through
``RandomResizedCrop(224)`` + horizontal flip, evaluation images through ``Resize(256)`` +
``CenterCrop(224)``, and the model normalizes with the ImageNet statistics.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from lit_robust.data.base import RobustDataModule
from lit_robust.data.folder import IMAGENET_MEAN, IMAGENET_STD
from lit_robust.data.images import IMAGE_EXTENSIONS, ImageSplit
from lit_robust.data.layouts import Split


class TransferDataModule(RobustDataModule):
    """Base of the downstream sets: 224-px transfer protocol and ImageNet normalization.

    See :class:`~lit_robust.data.base.RobustDataModule` for the arguments; ``image_size`` and
    ``resize`` default to 224 and ``"resize_center_crop"``.
    """

    mean = IMAGENET_MEAN
    std = IMAGENET_STD
    default_image_size = 224
    default_resize = "resize_center_crop"


def split_from_rows(rows: Iterable[tuple[Path | str, int]]) -> ImageSplit:
    """An :class:`ImageSplit` of files from ``(path, label)`` rows."""
    rows = list(rows)
    if not rows:
        raise FileNotFoundError("the split lists no images")
    labels = torch.tensor([label for _, label in rows], dtype=torch.int64)
    return ImageSplit(labels, files=[str(path) for path, _ in rows])


def image_files(directory: Path) -> list[str]:
    """Sorted names of the image files directly inside ``directory``."""
    return sorted(name for name in (entry.name for entry in directory.iterdir())
                  if name.lower().endswith(IMAGE_EXTENSIONS))


def per_class_split(
    rows: Sequence[tuple[str, int]], train_per_class: int, seed: int, split: Split, dataset: str
) -> list[tuple[str, int]]:
    """A fixed, seeded split of ``(path, label)`` rows: ``train_per_class`` random images of
    every class train, the rest test.

    Each class's images are permuted by ``numpy.random.default_rng([seed, label])`` in the
    order given (sorted file names), so the split depends only on the seed and the files.

    Raises:
        ValueError: when a class has no image left for the test split.
    """
    labels = np.array([label for _, label in rows])
    chosen: list[int] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) <= train_per_class:
            raise ValueError(
                f"{dataset}: class {int(label)} has {len(members)} images, but the split takes "
                f"train_per_class={train_per_class} of them for training and needs at least one "
                f"more for testing; lower train_per_class"
            )
        order = np.random.default_rng([seed, int(label)]).permutation(members)
        chosen.extend(order[:train_per_class] if split == "train" else order[train_per_class:])
    return [rows[i] for i in sorted(chosen)]
