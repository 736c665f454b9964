"""Oxford Flowers-102 (Nilsback & Zisserman, "Automated Flower Classification over a Large
Number of Classes", ICVGIP 2008): 102 flower species, official train / val / test split."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from lit_robust.data.images import ImageSplit
from lit_robust.data.layouts import DatasetLayout, Split
from lit_robust.data.listings import entry_error, load_mat
from lit_robust.data.transfer import TransferDataModule, split_from_rows

_SET_KEYS = {"train": "trnid", "val": "valid", "test": "tstid"}


def read_flowers_labels(folder: Path) -> np.ndarray:
    """``imagelabels.mat``'s ``labels``: the class id (1..102) of image ``i`` at ``i - 1``."""
    labels = load_mat(folder / "imagelabels.mat", ("labels",),
                      "the class id of every image in 'labels'")["labels"]
    return np.asarray(labels).reshape(-1)


def read_flowers(folder: Path, split: Split) -> ImageSplit:
    """``setid.mat``'s ``trnid`` / ``valid`` / ``tstid`` (1-based image numbers) over
    ``jpg/image_<nnnnn>.jpg``; class ids become labels in their sorted order. The ``.mat``
    files are read directly, without torchvision's checksums (subsets pass)."""
    class_ids = read_flowers_labels(folder)
    label_of = {int(c): label for label, c in enumerate(np.unique(class_ids))}
    path, key = folder / "setid.mat", _SET_KEYS[split]
    numbers = np.asarray(load_mat(path, (key,), "the image numbers of each split in 'trnid', "
                                  "'valid' and 'tstid'")[key]).reshape(-1)
    rows = []
    for index, n in enumerate(numbers):
        if not 1 <= int(n) <= len(class_ids):
            raise entry_error(path, f"an image number in 1..{len(class_ids)} (the images "
                              "imagelabels.mat labels)", int(n), f"{key}[{index}]")
        rows.append((folder / "jpg" / f"image_{int(n):05d}.jpg",
                     label_of[int(class_ids[int(n) - 1])]))
    return split_from_rows(rows)


class Flowers102DataModule(TransferDataModule):
    """Flowers-102: train + val (validation carved from both) vs test, or the official
    three-way split with ``val_size="official"``.

    Reads torchvision's layout ``flowers-102/{jpg/, imagelabels.mat, setid.mat}``. The classes
    are the class ids of ``imagelabels.mat`` (all 102 in the official file), named by their
    number. See :class:`RobustDataModule` for the arguments; images follow the 224-px transfer
    protocol.
    """

    dataset_name = "Flowers-102"
    layouts = (
        DatasetLayout("torchvision's Flowers-102 layout",
                      "{jpg/image_<nnnnn>.jpg, imagelabels.mat, setid.mat}",
                      ("flowers-102", "flowers102/flowers-102", "transfer/flowers102/flowers-102"),
                      ("jpg/", "imagelabels.mat", "setid.mat"), read_flowers, official_val=True),
    )

    @cached_property
    def class_names(self) -> tuple[str, ...]:  # type: ignore[override]
        """The class ids of ``imagelabels.mat`` as names (``"1"`` .. ``"102"``)."""
        return tuple(str(c) for c in np.unique(read_flowers_labels(self._locate()[1])))
