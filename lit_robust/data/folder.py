"""Any class-folder dataset: ``train/<class>/*`` and ``test/<class>/*`` images."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from lit_robust.data.base import RobustDataModule
from lit_robust.data.images import ImageSplit, class_folder_names, read_class_folders
from lit_robust.data.layouts import DatasetLayout, DatasetNotFoundError, Split

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_TREE = "{train,test}/<class name>/<image>"


def read_split_folder(folder: Path, split: Split) -> ImageSplit:
    """Read ``<folder>/<split>/<class name>/*``; the classes are the sorted folder names of
    ``<folder>/train``, and the split must have the same class folders."""
    classes = tuple(class_folder_names(folder / "train"))
    return read_class_folders(folder / split, expected_classes=classes)[1]


class ImageFolderDataModule(RobustDataModule):
    """A generic class-folder dataset (the layout ``torchvision.datasets.ImageFolder`` reads).

    The classes are the sorted names of the training folder's sub-folders; the test folder
    must have the same ones. Images may have any size: by default they are handled as in the
    transfer-learning protocol (``image_size=224``, ``resize="resize_center_crop"``).

    Args:
        train_dir: the training folder; with ``test_dir``, replaces ``<root>/train``.
        test_dir: the test folder; with ``train_dir``, replaces ``<root>/test``.
        mean: per-channel mean the model normalizes with.
        std: per-channel standard deviation the model normalizes with.
        horizontal_flip: mirror training images at random.
        **kwargs: the arguments of :class:`RobustDataModule`; ``root`` is the folder that
            holds ``train/`` and ``test/``.
    """

    dataset_name = "image-folder dataset"
    default_image_size = 224
    default_resize = "resize_center_crop"
    layouts = (DatasetLayout("class folders", _TREE, (), ("train/", "test/"), read_split_folder),)

    def __init__(
        self,
        train_dir: str | None = None,
        test_dir: str | None = None,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        horizontal_flip: bool = True,
        **kwargs: Any,
    ) -> None:
        if (train_dir is None) != (test_dir is None):
            raise ValueError("give both train_dir and test_dir, or neither (then root holds "
                             "train/ and test/)")
        super().__init__(**kwargs)
        self.train_dir = None if train_dir is None else Path(train_dir).expanduser()
        self.test_dir = None if test_dir is None else Path(test_dir).expanduser()
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.horizontal_flip = horizontal_flip

    def _split_folder(self, split: Split) -> Path:
        """The folder of class folders of ``split``."""
        if self.train_dir is None:
            _, folder = self._locate()
            return folder / split
        folder = self.train_dir if split == "train" else self.test_dir
        if not folder.is_dir():
            raise DatasetNotFoundError(
                f"{split}_dir '{folder}' is not a folder; expected {folder}/<class name>/<image>"
            )
        return folder

    @cached_property
    def class_names(self) -> tuple[str, ...]:  # type: ignore[override]
        """Sorted names of the training folder's class folders."""
        return tuple(class_folder_names(self._split_folder("train")))

    def _read(self, split: Split) -> ImageSplit:
        if self.train_dir is None:
            return super()._read(split)
        return read_class_folders(self._split_folder(split), expected_classes=self.class_names)[1]

    def prepare_data(self) -> None:
        """Fail early when a folder is missing."""
        self._split_folder("train")
        self._split_folder("test")
