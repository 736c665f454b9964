"""Oxford-IIIT Pets (Parkhi et al., "Cats and Dogs", CVPR 2012): 37 cat and dog breeds,
the official ``trainval`` / ``test`` split."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from lit_robust.data.images import ImageSplit
from lit_robust.data.layouts import DatasetLayout, Split
from lit_robust.data.listings import few, integer, lookup, numbered_lines, split_fields
from lit_robust.data.transfer import TransferDataModule, split_from_rows

_LINE = "'<image id> <class id> <species> <breed id>' with an integer class id"


def _entries(folder: Path, names: tuple[str, ...]) -> list[tuple[str, int, Path, int, str]]:
    """``(image id, class id, file, line number, line)`` of the annotation lists ``names``
    (``#`` lines skipped)."""
    entries = []
    for name in names:
        path = folder / "annotations" / name
        if path.is_file():
            for number, line in numbered_lines(path, comment="#"):
                image_id, class_id = split_fields(path, number, line, 2, _LINE)
                entries.append((image_id, integer(path, class_id, _LINE, line, number), path,
                                number, line))
    return entries


def read_pets_classes(folder: Path) -> list[tuple[int, str]]:
    """``(class id, breed name)`` in class-id order, from ``annotations/list.txt`` (else the
    split lists); names as torchvision writes them (``"American Bulldog"``)."""
    entries = _entries(folder, ("list.txt",)) or _entries(folder, ("trainval.txt", "test.txt"))
    breeds = {class_id: image_id.rsplit("_", 1)[0] for image_id, class_id, *_ in entries}
    return [(class_id, " ".join(part.title() for part in breeds[class_id].split("_")))
            for class_id in sorted(breeds)]


def read_pets(folder: Path, split: Split) -> ImageSplit:
    """``annotations/{trainval,test}.txt`` (``<image id> <class id> <species> <breed id>``)
    over ``images/<image id>.jpg``; class ids become labels in their sorted order."""
    label_of = {class_id: label for label, (class_id, _) in enumerate(read_pets_classes(folder))}
    name = "trainval.txt" if split == "train" else "test.txt"
    expected = f"a class id of annotations/list.txt ({few(label_of)})"
    return split_from_rows(
        (folder / "images" / f"{image_id}.jpg",
         lookup(label_of, class_id, path, expected, line, number))
        for image_id, class_id, path, number, line in _entries(folder, (name,)))


class OxfordPetsDataModule(TransferDataModule):
    """Oxford-IIIT Pets: ``trainval`` (validation carved from it) vs ``test``.

    Reads torchvision's layout ``oxford-iiit-pet/{images/*.jpg, annotations/{list,trainval,
    test}.txt}``. The classes are the breeds the annotation lists name (37 in the full
    dataset). See :class:`RobustDataModule` for the arguments; images follow the 224-px
    transfer protocol.
    """

    dataset_name = "Oxford-IIIT Pets"
    layouts = (
        DatasetLayout("torchvision's Oxford-IIIT Pets layout",
                      "{images/<breed>_<n>.jpg, annotations/{trainval,test}.txt}",
                      ("oxford-iiit-pet", "oxford_pets/oxford-iiit-pet",
                       "transfer/oxford_pets/oxford-iiit-pet"),
                      ("images/", "annotations/trainval.txt", "annotations/test.txt"), read_pets),
    )

    @cached_property
    def class_names(self) -> tuple[str, ...]:  # type: ignore[override]
        """Breed names in class-id order (e.g. ``Abyssinian``, ``American Bulldog``)."""
        return tuple(name for _, name in read_pets_classes(self._locate()[1]))
