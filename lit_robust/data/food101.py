"""Food-101 (Bossard et al., "Food-101 – Mining Discriminative Components with Random
Forests", ECCV 2014): 101 dishes, 750 training and 250 test images each."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from lit_robust.data.images import ImageSplit
from lit_robust.data.layouts import DatasetLayout, Split
from lit_robust.data.listings import entry_error, few, load_json, lookup, numbered_lines
from lit_robust.data.transfer import TransferDataModule, split_from_rows


def read_food101_classes(folder: Path) -> list[str]:
    """``meta/classes.txt`` in its order, else the sorted keys of ``meta/train.json``."""
    if (folder / "meta" / "classes.txt").is_file():
        return [line for _, line in numbered_lines(folder / "meta" / "classes.txt")]
    listing = load_json(folder / "meta" / "train.json")
    if not isinstance(listing, dict):
        raise entry_error(folder / "meta" / "train.json",
                          "an object mapping each class to its images", type(listing).__name__)
    return sorted(listing)


def _row(folder: Path, label_of: dict[str, int], entry: Any, path: Path,
         where: str | int) -> tuple[Path, int]:
    """A ``<class>/<id>`` entry → ``(images/<class>/<id>.jpg, label)``."""
    expected = f"'<class>/<image id>' with a class of {_classes_file(folder)} ({few(label_of)})"
    if not isinstance(entry, str) or "/" not in entry:
        raise entry_error(path, expected, entry, where)
    label = lookup(label_of, entry.split("/")[0], path, expected, entry, where)
    return folder / "images" / f"{entry}.jpg", label


def _classes_file(folder: Path) -> str:
    return "meta/classes.txt" if (folder / "meta" / "classes.txt").is_file() \
        else "meta/train.json"


def _label_of(folder: Path) -> dict[str, int]:
    return {name: label for label, name in enumerate(read_food101_classes(folder))}


def read_food101_json(folder: Path, split: Split) -> ImageSplit:
    """torchvision's reading: ``meta/<split>.json`` maps each class to its ``<class>/<id>``."""
    path = folder / "meta" / f"{split}.json"
    listing, label_of = load_json(path), _label_of(folder)
    if not isinstance(listing, dict) or not all(isinstance(v, list) for v in listing.values()):
        raise entry_error(path, "an object mapping each class to a list of '<class>/<image id>'",
                          type(listing).__name__)
    return split_from_rows(_row(folder, label_of, entry, path, f"entry {name}[{index}]")
                           for name in sorted(listing)
                           for index, entry in enumerate(listing[name]))


def read_food101_text(folder: Path, split: Split) -> ImageSplit:
    """The archive's text lists: ``meta/<split>.txt`` with one ``<class>/<id>`` per line."""
    path, label_of = folder / "meta" / f"{split}.txt", _label_of(folder)
    return split_from_rows(_row(folder, label_of, line, path, number)
                           for number, line in numbered_lines(path))


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
