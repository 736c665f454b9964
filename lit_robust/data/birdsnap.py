"""Birdsnap (Berg et al., "Birdsnap: Large-scale Fine-grained Visual Categorization of Birds",
CVPR 2014): 500 North American bird species, the official test list."""

from __future__ import annotations

import warnings
from functools import cached_property, partial
from pathlib import Path

from lit_robust.data.images import ImageSplit
from lit_robust.data.layouts import DatasetLayout, Split
from lit_robust.data.listings import few, integer, lookup, table_rows
from lit_robust.data.transfer import TransferDataModule, split_from_rows


def read_species(folder: Path) -> list[tuple[int, str]]:
    """``(species id, common name)`` of ``species.txt`` (tab-separated, with a header), in id
    order."""
    path = folder / "species.txt"
    return sorted((integer(path, row["id"], "an integer species id in the column id", line,
                           number), row["common"])
                  for number, line, row in table_rows(path, ("id", "common")))


def read_birdsnap(folder: Path, split: Split, images: str) -> ImageSplit:
    """``images.txt`` (tab-separated, columns ``path`` and ``species_id``) minus the paths of
    ``test_images.txt`` (header ``path``) is the training split, those paths the test split;
    image files are ``<images>/<path>``. Images that were never downloaded (Flickr removes
    some) are skipped with a warning."""
    label_of = {species_id: label for label, (species_id, _) in enumerate(read_species(folder))}
    test_paths = {row["path"] for *_, row in table_rows(folder / "test_images.txt", ("path",))}
    listing = folder / "images.txt"
    expected = f"a species_id of species.txt ({few(label_of)})"
    rows = [(folder / images / row["path"],
             lookup(label_of, integer(listing, row["species_id"], expected, line, number),
                    listing, expected, line, number))
            for number, line, row in table_rows(listing, ("path", "species_id"))
            if (row["path"] in test_paths) == (split == "test")]
    present = [(path, label) for path, label in rows if path.is_file()]
    if len(present) < len(rows):
        warnings.warn(f"Birdsnap {split}: {len(rows) - len(present)} of the {len(rows)} listed "
                      f"images are missing under {folder / images} and are skipped", stacklevel=2)
    return split_from_rows(present)


def _layout(images: str) -> DatasetLayout:
    return DatasetLayout(
        f"the official Birdsnap archive, images under {images}/",
        f"{{species.txt, images.txt, test_images.txt, {images}/<species dir>/<file>.jpg}}",
        ("birdsnap",), ("species.txt", "images.txt", "test_images.txt", f"{images}/"),
        partial(read_birdsnap, images=images),
    )


class BirdsnapDataModule(TransferDataModule):
    """Birdsnap: every listed image not in ``test_images.txt`` trains (validation carved from
    it), the 2,443 of ``test_images.txt`` test.

    Reads the official archive (``species.txt``, ``images.txt``, ``test_images.txt``) with the
    images that its ``get_birdsnap.py`` downloads into ``download/images/`` (or moved to
    ``images/``). See :class:`RobustDataModule` for the arguments; images follow the 224-px
    transfer protocol.
    """

    dataset_name = "Birdsnap"
    layouts = (_layout("download/images"), _layout("images"))

    @cached_property
    def class_names(self) -> tuple[str, ...]:  # type: ignore[override]
        """Common names of the species in id order (e.g. ``Acadian Flycatcher``)."""
        return tuple(name for _, name in read_species(self._locate()[1]))
