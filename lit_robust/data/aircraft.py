"""FGVC-Aircraft (Maji et al., "Fine-Grained Visual Classification of Aircraft", 2013):
100 aircraft variants, the official trainval / test split."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from lit_robust.data.images import ImageSplit
from lit_robust.data.layouts import DatasetLayout, Split
from lit_robust.data.listings import few, lookup, numbered_lines, split_fields
from lit_robust.data.transfer import TransferDataModule, split_from_rows


def read_variants(folder: Path) -> list[str]:
    """``data/variants.txt``: one variant name per line (names may contain spaces)."""
    return [line for _, line in numbered_lines(folder / "data" / "variants.txt")]


def read_aircraft(folder: Path, split: Split) -> ImageSplit:
    """``data/images_variant_{train,val,test}.txt`` (``<image id> <variant>`` lines) over
    ``data/images/<image id>.jpg``; labels are the variants' indices in ``variants.txt``."""
    label_of = {name: label for label, name in enumerate(read_variants(folder))}
    path = folder / "data" / f"images_variant_{split}.txt"
    expected = f"'<image id> <variant>' with a variant of variants.txt ({few(label_of)})"
    rows = []
    for number, line in numbered_lines(path):
        image_id, variant = split_fields(path, number, line, 2, expected, separator=" ")
        rows.append((folder / "data" / "images" / f"{image_id}.jpg",
                     lookup(label_of, variant, path, expected, line, number)))
    return split_from_rows(rows)


class FGVCAircraftDataModule(TransferDataModule):
    """FGVC-Aircraft at the variant level: trainval (validation carved from it, or the
    official val split with ``val_size="official"``) vs test.

    Reads torchvision's layout (the official archive) ``fgvc-aircraft-2013b/data/{images/,
    variants.txt, images_variant_{train,val,test}.txt}``. Whole images are used (the copyright
    banner at the bottom is not cropped). See :class:`RobustDataModule` for the arguments;
    images follow the 224-px transfer protocol.
    """

    dataset_name = "FGVC-Aircraft"
    layouts = (
        DatasetLayout("torchvision's FGVC-Aircraft layout (the official archive)",
                      "data/{images/<id>.jpg, variants.txt, images_variant_{train,val,test}.txt}",
                      ("fgvc-aircraft-2013b", "fgvc_aircraft/fgvc-aircraft-2013b"),
                      ("data/images/", "data/variants.txt", "data/images_variant_train.txt",
                       "data/images_variant_val.txt", "data/images_variant_test.txt"),
                      read_aircraft, official_val=True),
    )

    @cached_property
    def class_names(self) -> tuple[str, ...]:  # type: ignore[override]
        """The variants of ``variants.txt`` in its order (e.g. ``707-320``)."""
        return tuple(read_variants(self._locate()[1]))
