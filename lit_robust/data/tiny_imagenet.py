"""Tiny-ImageNet-200 (Le & Yang, 2015): 200 ImageNet classes at 64×64 px, official layout."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

import torch

from lit_robust.data.base import RobustDataModule
from lit_robust.data.images import ImageSplit
from lit_robust.data.layouts import DatasetLayout, Split
from lit_robust.data.listings import few, lookup, numbered_lines, split_fields


def read_wnids(folder: Path) -> list[str]:
    """The 200 WordNet ids, sorted (the order ``ImageFolder`` gives ``train/``)."""
    return sorted((folder / "wnids.txt").read_text().split())


def read_tiny_imagenet(folder: Path, split: Split) -> ImageSplit:
    """``train/<wnid>/images/*.JPEG``; the test split is the official ``val/`` split, labelled
    by ``val/val_annotations.txt`` (``<file>\\t<wnid>\\t<box>``)."""
    label_of = {wnid: label for label, wnid in enumerate(read_wnids(folder))}
    if split == "train":
        rows = [
            (str(folder / "train" / wnid / "images" / name), label)
            for wnid, label in label_of.items()
            for name in sorted(os.listdir(folder / "train" / wnid / "images"))
            if name.lower().endswith((".jpeg", ".jpg"))
        ]
    else:
        path = folder / "val" / "val_annotations.txt"
        expected = f"'<file>\\t<wnid>\\t<box>' with a wnid of wnids.txt ({few(label_of)})"
        rows = []
        for number, line in numbered_lines(path):
            name, wnid = split_fields(path, number, line, 2, expected)
            rows.append((str(folder / "val" / "images" / name),
                         lookup(label_of, wnid, path, expected, line, number)))
    labels = torch.tensor([label for _, label in rows], dtype=torch.int64)
    return ImageSplit(labels, files=[path for path, _ in rows])


class TinyImageNetDataModule(RobustDataModule):
    """Tiny-ImageNet-200: 200 classes, 500 training images per class and 50 per class in the
    official validation split, which serves as the test split (the test images of the official
    release have no labels); validation is carved from ``train/`` as for every dataset.

    Classes are ordered by sorted WordNet id; :attr:`class_names` are the first names in
    ``words.txt``. See :class:`RobustDataModule` for the arguments.
    """

    dataset_name = "Tiny-ImageNet-200"
    num_classes = 200
    mean = (0.4802, 0.4481, 0.3975)
    std = (0.2770, 0.2691, 0.2821)
    default_image_size = 64
    layouts = (
        DatasetLayout("the official Tiny-ImageNet-200 layout",
                      "{wnids.txt, words.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG, "
                      "val/val_annotations.txt}", ("tiny-imagenet-200",),
                      ("wnids.txt", "train/", "val/images/", "val/val_annotations.txt"),
                      read_tiny_imagenet),
    )

    @cached_property
    def class_names(self) -> tuple[str, ...]:  # type: ignore[override]
        """First English name of every class in ``words.txt`` (the WordNet id without it)."""
        _, folder = self._locate()
        names: dict[str, str] = {}
        if (folder / "words.txt").is_file():
            for line in (folder / "words.txt").read_text().splitlines():
                wnid, _, words = line.partition("\t")
                names[wnid] = words.split(",")[0].strip()
        return tuple(names.get(wnid, wnid) for wnid in read_wnids(folder))
