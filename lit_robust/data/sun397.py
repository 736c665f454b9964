"""SUN397 (Xiao et al., "SUN Database: Large-scale Scene Recognition from Abbey to Zoo",
CVPR 2010): 397 scene categories, the official partition 1 (50 train / 50 test per class)."""

from __future__ import annotations

from functools import cached_property, partial
from pathlib import Path

from lit_robust.data.images import ImageSplit
from lit_robust.data.layouts import DatasetLayout, Split
from lit_robust.data.listings import few, lookup, numbered_lines
from lit_robust.data.transfer import TransferDataModule, split_from_rows

_PARTITION_FILES = {"train": "Training_01.txt", "test": "Testing_01.txt"}


def read_sun397_categories(folder: Path) -> list[str]:
    """``ClassName.txt``'s category paths (``/a/abbey``, ``/a/apartment_building/outdoor``)."""
    return [line for _, line in numbered_lines(folder / "ClassName.txt")]


def read_sun397(folder: Path, split: Split, partitions: str) -> ImageSplit:
    """Partition 1's ``Training_01.txt`` / ``Testing_01.txt`` (image paths such as
    ``/a/abbey/sun_aaalbzqrimafwbiv.jpg``, relative to the dataset folder); the label is the
    index of the image's category in ``ClassName.txt``."""
    label_of = {category: label for label, category in enumerate(read_sun397_categories(folder))}
    path = folder / partitions / _PARTITION_FILES[split]
    expected = f"'<category>/<file>.jpg' with a category of ClassName.txt ({few(label_of)})"
    return split_from_rows(
        (folder / line.lstrip("/"),
         lookup(label_of, line.rsplit("/", 1)[0], path, expected, line, number))
        for number, line in numbered_lines(path))


def _layout(partitions: str, where: str) -> DatasetLayout:
    prefix = f"{partitions}/" if partitions else ""
    return DatasetLayout(
        f"torchvision's SUN397 layout with the official partition files {where}",
        f"{{ClassName.txt, <letter>/<category>/*.jpg, {prefix}Training_01.txt, "
        f"{prefix}Testing_01.txt}}",
        ("SUN397", "sun397"),
        ("ClassName.txt", f"{prefix}Training_01.txt", f"{prefix}Testing_01.txt"),
        partial(read_sun397, partitions=partitions),
    )


class SUN397DataModule(TransferDataModule):
    """SUN397, partition 1: ``Training_01.txt`` (validation carved from it) vs
    ``Testing_01.txt``.

    Reads torchvision's layout ``SUN397/{ClassName.txt, <letter>/<category>/*.jpg}`` with the
    files of the official ``Partitions.zip`` unpacked into ``SUN397/`` or ``SUN397/Partitions/``.
    See :class:`RobustDataModule` for the arguments; images follow the 224-px transfer
    protocol.
    """

    dataset_name = "SUN397"
    layouts = (_layout("", "beside ClassName.txt"), _layout("Partitions", "in Partitions/"))

    @cached_property
    def class_names(self) -> tuple[str, ...]:  # type: ignore[override]
        """torchvision's names: the category path without its letter (``abbey``,
        ``apartment_building/outdoor``)."""
        return tuple(category[3:] for category in read_sun397_categories(self._locate()[1]))
