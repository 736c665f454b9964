"""Caltech-101 (Fei-Fei et al., CVPR-W 2004) and Caltech-256 (Griffin et al., 2007).

Neither has an official split. The transfer-learning protocol trains on 30 (Caltech-101) or
60 (Caltech-256) images per class and tests on the rest, without Caltech-101's
``BACKGROUND_Google`` class. Which images train depends on the code:

- ``train_selection="first"`` (default): the first ones of every class in dataset order
  (``image_0001``, ``image_0002``, ...), as the official code of Vaishnavi et al., "A Study of
  the Effects of Transfer Learning on Adversarial Robustness" (TMLR 2024) and of Salman et al.
  (NeurIPS 2020) select them; that code keeps Caltech-256's ``257.clutter`` as class 257
  (``keep_clutter=True``, the default);
- ``train_selection="seeded"``: random images, as Kornblith et al. (CVPR 2019) describe, fixed
  by permuting every class's images (sorted by file name) with
  ``numpy.random.default_rng([CALTECH_SPLIT_SEED, label])``, so each class draws its own
  permutation.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property, partial
from pathlib import Path
from typing import Any, Literal

from lit_robust.data.images import ImageSplit, class_folder_names
from lit_robust.data.layouts import DatasetLayout, Split
from lit_robust.data.listings import few, lookup, numbered_lines
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

TrainSelection = Literal["first", "seeded"]


def caltech101_classes(folder: Path) -> list[str]:
    """The sorted category folders of ``101_ObjectCategories/`` without the background."""
    return [name for name in class_folder_names(folder / _CALTECH101_IMAGES)
            if name != CALTECH101_BACKGROUND]


def caltech256_folders(folder: Path, keep_clutter: bool = True) -> list[str]:
    """The sorted ``<nnn>.<name>`` folders of ``256_ObjectCategories/``, ``257.clutter`` (the
    last) included unless ``keep_clutter`` is false."""
    return [name for name in class_folder_names(folder / _CALTECH256_IMAGES)
            if keep_clutter or name != CALTECH256_CLUTTER]


def _all_rows(images: Path, classes: list[str]) -> list[tuple[str, int]]:
    return [(str(images / name / file), label) for label, name in enumerate(classes)
            for file in image_files(images / name)]


def first_per_class_split(
    rows: Sequence[tuple[str, int]], train_per_class: int, split: Split, dataset: str
) -> list[tuple[str, int]]:
    """The first ``train_per_class`` rows of every class train, the rest test (rows in dataset
    order: classes in turn, each class's files sorted by name).

    Raises:
        ValueError: when a class has no image left for the test split.
    """
    counts: dict[int, int] = {}
    for _, label in rows:
        counts[label] = counts.get(label, 0) + 1
    for label, count in counts.items():
        if count <= train_per_class:
            raise ValueError(
                f"{dataset}: class {label} has {count} images, but the split takes "
                f"train_per_class={train_per_class} of them for training and needs at least one "
                f"more for testing; lower train_per_class"
            )
    seen: dict[int, int] = {}
    chosen = []
    for row in rows:
        rank = seen[row[1]] = seen.get(row[1], 0) + 1
        if (rank <= train_per_class) == (split == "train"):
            chosen.append(row)
    return chosen


def _split_rows(rows: list[tuple[str, int]], split: Split, train_per_class: int,
                selection: TrainSelection, dataset: str) -> ImageSplit:
    if selection == "first":
        return split_from_rows(first_per_class_split(rows, train_per_class, split, dataset))
    return split_from_rows(per_class_split(rows, train_per_class, CALTECH_SPLIT_SEED, split,
                                           dataset))


def read_caltech101_per_class(folder: Path, split: Split, train_per_class: int,
                              selection: TrainSelection) -> ImageSplit:
    """torchvision's layout ``101_ObjectCategories/<category>/image_<nnnn>.jpg``, split by
    :func:`first_per_class_split` or :func:`~lit_robust.data.transfer.per_class_split`."""
    rows = _all_rows(folder / _CALTECH101_IMAGES, caltech101_classes(folder))
    return _split_rows(rows, split, train_per_class, selection, "Caltech-101")


def read_caltech101_lists(folder: Path, split: Split) -> ImageSplit:
    """A split given by ``train.txt`` / ``test.txt`` (``<category>/<file>`` lines) over
    ``101_ObjectCategories/``; background lines are skipped."""
    label_of = {name: label for label, name in enumerate(caltech101_classes(folder))}
    path = folder / f"{split}.txt"
    expected = (f"'<category>/<file>' with a category folder of {_CALTECH101_IMAGES}/ "
                f"({few(label_of)})")
    return split_from_rows(
        (folder / _CALTECH101_IMAGES / line,
         lookup(label_of, line.split("/")[0], path, expected, line, number))
        for number, line in numbered_lines(path)
        if line.split("/")[0] != CALTECH101_BACKGROUND)


def read_caltech256_per_class(folder: Path, split: Split, train_per_class: int,
                              selection: TrainSelection, keep_clutter: bool) -> ImageSplit:
    """torchvision's layout ``256_ObjectCategories/<nnn>.<name>/<nnn>_<mmmm>.jpg``, split as
    :func:`read_caltech101_per_class`."""
    rows = _all_rows(folder / _CALTECH256_IMAGES, caltech256_folders(folder, keep_clutter))
    return _split_rows(rows, split, train_per_class, selection, "Caltech-256")


def _check_train_per_class(train_per_class: int, selection: str) -> None:
    if isinstance(train_per_class, bool) or not isinstance(train_per_class, int) \
            or train_per_class < 1:
        raise ValueError(f"train_per_class must be a positive integer, got {train_per_class!r}")
    if selection not in ("first", "seeded"):
        raise ValueError(f"train_selection must be 'first' (the first images of every class, "
                         f"the official code) or 'seeded' (seeded random ones), got "
                         f"{selection!r}")


def _selection_words(train_per_class: int, selection: TrainSelection) -> str:
    which = "the first" if selection == "first" else "seeded random"
    return f"{which} {train_per_class} per class train, the rest test"


class Caltech101DataModule(TransferDataModule):
    """Caltech-101: 101 object categories (``BACKGROUND_Google`` removed).

    Reads torchvision's layout ``caltech101/101_ObjectCategories/<category>/*.jpg`` split
    per class (``train_per_class`` per class train, the rest test; see the module), or a split
    given by ``train.txt`` / ``test.txt`` beside ``101_ObjectCategories/``.

    Args:
        train_per_class: training images per class (30 in the protocol); unused when
            ``train.txt`` / ``test.txt`` give the split.
        train_selection: ``"first"`` (the first images of every class in file order, the
            official code of the transfer study) or ``"seeded"`` (seeded random images).
        **kwargs: the arguments of :class:`RobustDataModule`; images follow the 224-px
            transfer protocol.
    """

    dataset_name = "Caltech-101"
    layouts = ()

    def __init__(self, train_per_class: int = 30, train_selection: TrainSelection = "first",
                 **kwargs: Any) -> None:
        _check_train_per_class(train_per_class, train_selection)
        super().__init__(**kwargs)
        self.train_per_class = train_per_class
        self.train_selection = train_selection
        subfolders = ("caltech101", "caltech101/caltech101", "transfer/caltech101/caltech101")
        self.layouts = (
            DatasetLayout("a split listed in train.txt / test.txt",
                          f"{{{_CALTECH101_IMAGES}/<category>/*.jpg, train.txt, test.txt}}",
                          subfolders, (f"{_CALTECH101_IMAGES}/", "train.txt", "test.txt"),
                          read_caltech101_lists),
            DatasetLayout(f"torchvision's Caltech-101 layout "
                          f"({_selection_words(train_per_class, train_selection)})",
                          f"{_CALTECH101_IMAGES}/<category>/image_<nnnn>.jpg",
                          subfolders, (f"{_CALTECH101_IMAGES}/",),
                          partial(read_caltech101_per_class, train_per_class=train_per_class,
                                  selection=train_selection)),
        )

    @cached_property
    def class_names(self) -> tuple[str, ...]:  # type: ignore[override]
        """The sorted category folders (``Faces``, ``Faces_easy``, ..., ``yin_yang``)."""
        return tuple(caltech101_classes(self._locate()[1]))


class Caltech256DataModule(TransferDataModule):
    """Caltech-256: 256 object categories and ``257.clutter`` (257 classes, as the transfer
    study's official code), or the 256 categories alone.

    Reads torchvision's layout ``caltech256/256_ObjectCategories/<nnn>.<name>/*.jpg`` split
    per class (``train_per_class`` per class train, the rest test; see the module).

    Args:
        train_per_class: training images per class (60 in the protocol).
        train_selection: ``"first"`` (the first images of every class in file order, the
            official code of the transfer study) or ``"seeded"`` (seeded random images).
        keep_clutter: keep ``257.clutter`` as the 257th class (the official code); ``False``
            drops it (Kornblith et al.'s 256 classes).
        **kwargs: the arguments of :class:`RobustDataModule`; images follow the 224-px
            transfer protocol.
    """

    dataset_name = "Caltech-256"
    layouts = ()

    def __init__(self, train_per_class: int = 60, train_selection: TrainSelection = "first",
                 keep_clutter: bool = True, **kwargs: Any) -> None:
        _check_train_per_class(train_per_class, train_selection)
        super().__init__(**kwargs)
        self.train_per_class = train_per_class
        self.train_selection = train_selection
        self.keep_clutter = keep_clutter
        self.layouts = (
            DatasetLayout(f"torchvision's Caltech-256 layout "
                          f"({_selection_words(train_per_class, train_selection)})",
                          f"{_CALTECH256_IMAGES}/<nnn>.<name>/<nnn>_<mmmm>.jpg",
                          ("caltech256", "caltech256/caltech256"), (f"{_CALTECH256_IMAGES}/",),
                          partial(read_caltech256_per_class, train_per_class=train_per_class,
                                  selection=train_selection, keep_clutter=keep_clutter)),
        )

    @cached_property
    def class_names(self) -> tuple[str, ...]:  # type: ignore[override]
        """The category names without their number (``ak47``, ``american-flag``, ...,
        ``clutter``)."""
        return tuple(name.split(".", 1)[-1]
                     for name in caltech256_folders(self._locate()[1], self.keep_clutter))
