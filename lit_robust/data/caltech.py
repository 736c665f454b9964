"""Caltech-101 (Fei-Fei et al., CVPR-W 2004) and Caltech-256 (Griffin et al., 2007).

Neither has an official split. The transfer-learning protocol (Kornblith et al., CVPR 2019;
Salman et al., NeurIPS 2020) trains on 30 (Caltech-101) or 60 (Caltech-256) random images per
class and tests on the rest, without Caltech-101's ``BACKGROUND_Google`` and Caltech-256's
``257.clutter`` classes. The split here is fixed: every class's images, sorted by file name,
are permuted with ``numpy.random.default_rng([CALTECH_SPLIT_SEED, label])``.
"""

from __future__ import annotations

from functools import cached_property, partial
from pathlib import Path
from typing import Any

from lit_robust.data.images import ImageSplit, class_folder_names
from lit_robust.data.layouts import DatasetLayout, Split
from lit_robust.data.transfer import (
    TransferDataModule,
    image_files,
    per_class_split,
    split_from_rows,
)

CALTECH_SPLIT_SEED = 0
CALTECH101_BACKGROUND = "BACKGROUND_Google"
CALTECH256_CLUTTER = "257.clutter"
_CALTECH101_IMAGES = "101_ObjectCategories"
_CALTECH256_IMAGES = "256_ObjectCategories"


def caltech101_classes(folder: Path) -> list[str]:
    """The sorted category folders of ``101_ObjectCategories/`` without the background."""
    return [name for name in class_folder_names(folder / _CALTECH101_IMAGES)
            if name != CALTECH101_BACKGROUND]


def caltech256_folders(folder: Path) -> list[str]:
    """The sorted ``<nnn>.<name>`` folders of ``256_ObjectCategories/`` without the clutter."""
    return [name for name in class_folder_names(folder / _CALTECH256_IMAGES)
            if name != CALTECH256_CLUTTER]


def _all_rows(images: Path, classes: list[str]) -> list[tuple[str, int]]:
    return [(str(images / name / file), label) for label, name in enumerate(classes)
            for file in image_files(images / name)]


def read_caltech101_seeded(folder: Path, split: Split, train_per_class: int) -> ImageSplit:
    """torchvision's layout ``101_ObjectCategories/<category>/image_<nnnn>.jpg``, split by
    :func:`~lit_robust.data.transfer.per_class_split`."""
    rows = _all_rows(folder / _CALTECH101_IMAGES, caltech101_classes(folder))
    return split_from_rows(per_class_split(rows, train_per_class, CALTECH_SPLIT_SEED, split,
                                           "Caltech-101"))


def read_caltech101_lists(folder: Path, split: Split) -> ImageSplit:
    """A split given by ``train.txt`` / ``test.txt`` (``<category>/<file>`` lines) over
    ``101_ObjectCategories/``; background lines are skipped."""
    label_of = {name: label for label, name in enumerate(caltech101_classes(folder))}
    lines = (folder / f"{split}.txt").read_text().split()
    return split_from_rows((folder / _CALTECH101_IMAGES / line, label_of[line.split("/")[0]])
                           for line in lines if line.split("/")[0] != CALTECH101_BACKGROUND)


def read_caltech256_seeded(folder: Path, split: Split, train_per_class: int) -> ImageSplit:
    """torchvision's layout ``256_ObjectCategories/<nnn>.<name>/<nnn>_<mmmm>.jpg``, split by
    :func:`~lit_robust.data.transfer.per_class_split`."""
    rows = _all_rows(folder / _CALTECH256_IMAGES, caltech256_folders(folder))
    return split_from_rows(per_class_split(rows, train_per_class, CALTECH_SPLIT_SEED, split,
                                           "Caltech-256"))


def _check_train_per_class(train_per_class: int) -> None:
    if isinstance(train_per_class, bool) or not isinstance(train_per_class, int) \
            or train_per_class < 1:
        raise ValueError(f"train_per_class must be a positive integer, got {train_per_class!r}")


class Caltech101DataModule(TransferDataModule):
    """Caltech-101: 101 object categories (``BACKGROUND_Google`` removed).

    Reads torchvision's layout ``caltech101/101_ObjectCategories/<category>/*.jpg`` with the
    fixed seeded split of this module (``train_per_class`` per class train, the rest test), or
    a split given by ``train.txt`` / ``test.txt`` beside ``101_ObjectCategories/``.

    Args:
        train_per_class: training images per class of the seeded split (30 in the protocol);
            unused when ``train.txt`` / ``test.txt`` give the split.
        **kwargs: the arguments of :class:`RobustDataModule`; images follow the 224-px
            transfer protocol.
    """

    dataset_name = "Caltech-101"
    layouts = ()

    def __init__(self, train_per_class: int = 30, **kwargs: Any) -> None:
        _check_train_per_class(train_per_class)
        super().__init__(**kwargs)
        self.train_per_class = train_per_class
        subfolders = ("caltech101", "caltech101/caltech101", "transfer/caltech101/caltech101")
        self.layouts = (
            DatasetLayout("a split listed in train.txt / test.txt",
                          f"{{{_CALTECH101_IMAGES}/<category>/*.jpg, train.txt, test.txt}}",
                          subfolders, (f"{_CALTECH101_IMAGES}/", "train.txt", "test.txt"),
                          read_caltech101_lists),
            DatasetLayout(f"torchvision's Caltech-101 layout ({train_per_class} per class train, "
                          f"the rest test)", f"{_CALTECH101_IMAGES}/<category>/image_<nnnn>.jpg",
                          subfolders, (f"{_CALTECH101_IMAGES}/",),
                          partial(read_caltech101_seeded, train_per_class=train_per_class)),
        )

    @cached_property
    def class_names(self) -> tuple[str, ...]:  # type: ignore[override]
        """The sorted category folders (``Faces``, ``Faces_easy``, ..., ``yin_yang``)."""
        return tuple(caltech101_classes(self._locate()[1]))


class Caltech256DataModule(TransferDataModule):
    """Caltech-256: 256 object categories (``257.clutter`` removed).

    Reads torchvision's layout ``caltech256/256_ObjectCategories/<nnn>.<name>/*.jpg`` with the
    fixed seeded split of this module (``train_per_class`` per class train, the rest test).

    Args:
        train_per_class: training images per class (60 in the protocol).
        **kwargs: the arguments of :class:`RobustDataModule`; images follow the 224-px
            transfer protocol.
    """

    dataset_name = "Caltech-256"
    layouts = ()

    def __init__(self, train_per_class: int = 60, **kwargs: Any) -> None:
        _check_train_per_class(train_per_class)
        super().__init__(**kwargs)
        self.train_per_class = train_per_class
        self.layouts = (
            DatasetLayout(f"torchvision's Caltech-256 layout ({train_per_class} per class train, "
                          f"the rest test)", f"{_CALTECH256_IMAGES}/<nnn>.<name>/<nnn>_<mmmm>.jpg",
                          ("caltech256", "caltech256/caltech256"), (f"{_CALTECH256_IMAGES}/",),
                          partial(read_caltech256_seeded, train_per_class=train_per_class)),
        )

    @cached_property
    def class_names(self) -> tuple[str, ...]:  # type: ignore[override]
        """The category names without their number (``ak47``, ``american-flag``, ...)."""
        return tuple(name.split(".", 1)[-1] for name in caltech256_folders(self._locate()[1]))
