"""Stanford Cars (Krause et al., "3D Object Representations for Fine-Grained
Categorization", 3dRR 2013): 196 car models, the official train / test split."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import scipy.io

from lit_robust.data.images import ImageSplit
from lit_robust.data.layouts import DatasetLayout, Split
from lit_robust.data.transfer import TransferDataModule, image_files, split_from_rows

_ANNOTATIONS = {"train": "devkit/cars_train_annos.mat", "test": "cars_test_annos_withlabels.mat"}
_IMAGES = {"train": "cars_train", "test": "cars_test"}


def read_cars_devkit(folder: Path, split: Split) -> ImageSplit:
    """torchvision's layout: the ``annotations`` struct of ``devkit/cars_train_annos.mat`` /
    ``cars_test_annos_withlabels.mat`` (fields ``fname`` and ``class``, 1-based) over
    ``cars_train/`` / ``cars_test/``."""
    annotations = scipy.io.loadmat(str(folder / _ANNOTATIONS[split]),
                                   squeeze_me=True)["annotations"]
    return split_from_rows((folder / _IMAGES[split] / str(entry["fname"]), int(entry["class"]) - 1)
                           for entry in annotations.reshape(-1))


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
    if (folder / "classes.txt").is_file():
        lines = [line.split("\t", 1) for line in (folder / "classes.txt").read_text().splitlines()
                 if line.strip()]
        return [(class_id.strip(), name.strip()) for class_id, name in lines]
    names = scipy.io.loadmat(str(folder / "devkit" / "cars_meta.mat"),
                             squeeze_me=True)["class_names"].reshape(-1)
    return [(f"{index + 1:03d}", str(name)) for index, name in enumerate(names)]


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
