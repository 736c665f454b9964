"""Food-101 (Bossard et al., "Food-101 – Mining Discriminative Components with Random
Forests", ECCV 2014): 101 dishes, 750 training and 250 test images each."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

from lit_robust.data.images import ImageSplit
from lit_robust.data.layouts import DatasetLayout, Split
from lit_robust.data.transfer import TransferDataModule, split_from_rows


def read_food101_classes(folder: Path) -> list[str]:
    """``meta/classes.txt`` in its order, else the sorted keys of ``meta/train.json``."""
    if (folder / "meta" / "classes.txt").is_file():
        return (folder / "meta" / "classes.txt").read_text().split()
    return sorted(json.loads((folder / "meta" / "train.json").read_text()))


def _rows(folder: Path, entries: list[str]) -> list[tuple[Path, int]]:
    """``<class>/<id>`` entries → ``(images/<class>/<id>.jpg, label)``."""
    label_of = {name: label for label, name in enumerate(read_food101_classes(folder))}
    return [(folder / "images" / f"{entry}.jpg", label_of[entry.split("/")[0]])
            for entry in entries]


def read_food101_json(folder: Path, split: Split) -> ImageSplit:
    """torchvision's reading: ``meta/<split>.json`` maps each class to its ``<class>/<id>``."""
    listing = json.loads((folder / "meta" / f"{split}.json").read_text())
    return split_from_rows(_rows(folder, [entry for name in sorted(listing)
                                          for entry in listing[name]]))


def read_food101_text(folder: Path, split: Split) -> ImageSplit:
    """The archive's text lists: ``meta/<split>.txt`` with one ``<class>/<id>`` per line."""
    return split_from_rows(_rows(folder, (folder / "meta" / f"{split}.txt").read_text().split()))


_SUBFOLDERS = ("food-101", "food101/food-101", "transfer/food101/food-101")


class Food101DataModule(TransferDataModule):
    """Food-101: the official train / test lists (``meta/``) over ``images/<class>/<id>.jpg``.

    Reads torchvision's layout (``meta/{train,test}.json``) or the text lists of the official
    archive (``meta/{classes,train,test}.txt``). The classes are those the files name, so a
    subset of the dataset gives a smaller head. See :class:`RobustDataModule` for the
    arguments; images follow the 224-px transfer protocol.
    """

    dataset_name = "Food-101"
    layouts = (
        DatasetLayout("torchvision's Food-101 layout", "{images/<class>/<id>.jpg, "
                      "meta/{train,test}.json}", _SUBFOLDERS,
                      ("images/", "meta/train.json", "meta/test.json"), read_food101_json),
        DatasetLayout("the official archive's text lists", "{images/<class>/<id>.jpg, "
                      "meta/{classes,train,test}.txt}", _SUBFOLDERS,
                      ("images/", "meta/classes.txt", "meta/train.txt", "meta/test.txt"),
                      read_food101_text),
    )

    @cached_property
    def class_names(self) -> tuple[str, ...]:  # type: ignore[override]
        """The class names of ``meta/`` (e.g. ``apple_pie``)."""
        return tuple(read_food101_classes(self._locate()[1]))
