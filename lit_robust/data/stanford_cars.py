"""Stanford Cars (Krause et al., "3D Object Representations for Fine-Grained
Categorization", 3dRR 2013): 196 car models, the official train / test split."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from lit_robust.data.images import ImageSplit
from lit_robust.data.layouts import DatasetLayout, Split
from lit_robust.data.listings import entry_error, integer, load_mat, numbered_lines, split_fields
from lit_robust.data.transfer import TransferDataModule, image_files, split_from_rows

_ANNOTATIONS = {"train": "devkit/cars_train_annos.mat", "test": "cars_test_annos_withlabels.mat"}
_IMAGES = {"train": "cars_train", "test": "cars_test"}


def read_cars_devkit(folder: Path, split: Split) -> ImageSplit:
    """torchvision's layout: the ``annotations`` struct of ``devkit/cars_train_annos.mat`` /
    ``cars_test_annos_withlabels.mat`` (fields ``fname`` and ``class``, 1-based) over
    ``cars_train/`` / ``cars_test/``."""
    path = folder / _ANNOTATIONS[split]
    expected = "an 'annotations' struct array with the fields fname and class"
    annotations = load_mat(path, ("annotations",), expected)["annotations"]
    fields = annotations.dtype.names or ()
    if "fname" not in fields or "class" not in fields:
        raise entry_error(path, expected, f"annotations with the fields {list(fields)}")
    count = len(read_cars_classes(folder))
    rows = []
    for index, entry in enumerate(annotations.reshape(-1)):
        shown, where = f"class {entry['class']} of {entry['fname']}", f"annotations[{index}]"
        class_id = integer(path, str(entry["class"]), f"a class in 1..{count}", shown, where)
        if not 1 <= class_id <= count:
            raise entry_error(path, f"a class in 1..{count}", shown, where)
        rows.append((folder / _IMAGES[split] / str(entry["fname"]), class_id - 1))
    return split_from_rows(rows)


def read_cars_class_folders(folder: Path, split: Split) -> ImageSplit:
    """Class-id folders ``<split>/<nnn>/*.jpg`` (``001`` .. ``196``, label = id - 1)."""
    classes = read_cars_classes(folder)
    rows = []
    for label, (class_id, _) in enumerate(classes):
        directory = folder / split / class_id
        if directory.is_dir():
            rows.extend((directory / name, label) for name in image_files(directory))
    return split_from_rows(rows)


def read_cars_classes(folder: Path) -> list[tuple[str, str]]:
    """``(class folder, name)`` from ``classes.txt`` (``<nnn>\\t<name>``), else from
    ``devkit/cars_meta.mat``'s ``class_names`` (folders ``001`` ..)."""
    path = folder / "classes.txt"
    if path.is_file():
        return [tuple(split_fields(path, number, line, 2, "'<class folder>\\t<class name>'",
                                   separator="\t"))
                for number, line in numbered_lines(path)]
    names = load_mat(folder / "devkit" / "cars_meta.mat", ("class_names",),
                     "the car model names in 'class_names'")["class_names"]
    return [(f"{index + 1:03d}", str(name)) for index, name in enumerate(names.reshape(-1))]


_SUBFOLDERS = ("stanford_cars", "transfer/stanford_cars")


class StanfordCarsDataModule(TransferDataModule):
    """Stanford Cars: the official train (validation carved from it) / test split.

    Reads torchvision's layout ``stanford_cars/{cars_train/, cars_test/,
    devkit/{cars_meta.mat, cars_train_annos.mat}, cars_test_annos_withlabels.mat}`` or
    class-id folders ``{train,test}/<001..196>/*.jpg`` named by ``classes.txt``. Whole images
    are used (not cropped to the car's box). See :class:`RobustDataModule` for the arguments;
    images follow the 224-px transfer protocol.
    """

    dataset_name = "Stanford Cars"
    layouts = (
        DatasetLayout("torchvision's Stanford Cars layout",
                      "{cars_train/*.jpg, cars_test/*.jpg, devkit/cars_meta.mat, "
                      "devkit/cars_train_annos.mat, cars_test_annos_withlabels.mat}", _SUBFOLDERS,
                      ("cars_train/", "cars_test/", "devkit/cars_meta.mat",
                       "devkit/cars_train_annos.mat", "cars_test_annos_withlabels.mat"),
                      read_cars_devkit),
        DatasetLayout("class-id folders", "{train,test}/<001..196>/*.jpg, classes.txt "
                      "(<nnn>\\t<name> lines)", _SUBFOLDERS, ("train/", "test/", "classes.txt"),
                      read_cars_class_folders),
    )

    @cached_property
    def class_names(self) -> tuple[str, ...]:  # type: ignore[override]
        """Car model names in class-id order (e.g. ``AM General Hummer SUV 2000``)."""
        return tuple(name for _, name in read_cars_classes(self._locate()[1]))
