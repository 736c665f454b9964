"""DTD, the Describable Textures Dataset (Cimpoi et al., "Describing Textures in the Wild",
CVPR 2014): 47 texture categories, the official partition 1 (train1 + val1 vs test1)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from lit_robust.data.images import ImageSplit, class_folder_names
from lit_robust.data.layouts import DatasetLayout, Split
from lit_robust.data.listings import entry_error, few, load_json, lookup, numbered_lines
from lit_robust.data.transfer import TransferDataModule, split_from_rows

COOP_SPLIT_FILE = "split_zhou_DescribableTextures.json"


def _row(folder: Path, label_of: dict[str, int], entry: Any, path: Path,
         where: str | int) -> tuple[Path, int]:
    """A ``<category>/<file>`` path → ``(images/<category>/<file>, label)``; the labels are
    the indices of the sorted category folders of ``images/``."""
    expected = f"'<category>/<file>' with a category folder of images/ ({few(label_of)})"
    if not isinstance(entry, str):
        raise entry_error(path, expected, entry, where)
    return (folder / "images" / entry,
            lookup(label_of, entry.split("/")[0], path, expected, entry, where))


def _label_of(folder: Path) -> dict[str, int]:
    return {name: label for label, name in enumerate(class_folder_names(folder / "images"))}


def read_dtd_partition(folder: Path, split: Split) -> ImageSplit:
    """The official lists ``labels/{train1,val1,test1}.txt`` (``<category>/<file>`` lines)."""
    path, label_of = folder / "labels" / f"{split}1.txt", _label_of(folder)
    return split_from_rows(_row(folder, label_of, line, path, number)
                           for number, line in numbered_lines(path))


def read_dtd_coop(folder: Path, split: Split) -> ImageSplit:
    """CoOp's split file: ``{"train"|"val"|"test": [[<category>/<file>, label, category]]}``
    (the label is taken from the category folder, not from the file)."""
    path, label_of = folder / COOP_SPLIT_FILE, _label_of(folder)
    document = load_json(path)
    entries = document.get(split) if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise entry_error(path, f"an object with a list '{split}' of [<category>/<file>, "
                          "label, category] entries", f"{type(document).__name__} without it")
    rows = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, list) or not entry:
            raise entry_error(path, "[<category>/<file>, label, category]", entry,
                              f"entry {split}[{index}]")
        rows.append(_row(folder, label_of, entry[0], path, f"entry {split}[{index}]"))
    return split_from_rows(rows)


_SUBFOLDERS = ("dtd/dtd", "dtd", "transfer/dtd/dtd")


class DTDDataModule(TransferDataModule):
    """DTD, partition 1: train + val (validation carved from both, or the official val split
    with ``val_size="official"``) vs test.

    Reads the official archive's layout (``images/<category>/*.jpg``,
    ``labels/{train1,val1,test1}.txt``; torchvision keeps it under ``dtd/dtd``) or CoOp's
    split file ``split_zhou_DescribableTextures.json`` next to ``images/``. The classes are the
    category folders of ``images/`` (47 in the full dataset). See :class:`RobustDataModule`
    for the arguments; images follow the 224-px transfer protocol.
    """

    dataset_name = "DTD"
    layouts = (
        DatasetLayout("the official DTD layout (partition 1)",
                      "{images/<category>/*.jpg, labels/{train1,val1,test1}.txt}", _SUBFOLDERS,
                      ("images/", "labels/train1.txt", "labels/val1.txt", "labels/test1.txt"),
                      read_dtd_partition, official_val=True),
        DatasetLayout("CoOp's DTD split file", f"{{images/<category>/*.jpg, {COOP_SPLIT_FILE}}}",
                      _SUBFOLDERS, ("images/", COOP_SPLIT_FILE), read_dtd_coop,
                      official_val=True),
    )

    @cached_property
    def class_names(self) -> tuple[str, ...]:  # type: ignore[override]
        """The sorted category folders of ``images/`` (e.g. ``banded``)."""
        return tuple(class_folder_names(self._locate()[1] / "images"))
