"""The DataModule base every dataset builds on.

It owns what all datasets share: where the files are (``root``, layouts, optional download),
the held-out validation split carved from the training split, class-balanced subsets for
low-data regimes and fast evaluation, resizing and augmentation, in-memory caching of decoded
images and the four loaders. A dataset's module only declares its statistics, its classes and
its on-disk layouts.

Batches are ``(images, labels)``: ``float32`` images in [0, 1] of shape ``(B, 3, s, s)``
(never normalized — the model's first module does that with :attr:`mean` and :attr:`std`) and
``int64`` labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader

from lit_robust.data.datasets import ImageDataset
from lit_robust.data.images import ImageSplit
from lit_robust.data.layouts import DatasetLayout, DatasetNotFoundError, Split, not_found_message
from lit_robust.data.splits import (
    TEST_SUBSET_STREAM,
    TRAIN_STREAM,
    VAL_SUBSET_STREAM,
    balanced_subset,
    resolve_size,
    stratified_split,
    stratified_subset,
)
from lit_robust.data.transforms import (
    RESIZE_POLICIES,
    ResizePolicy,
    preparations,
    to_float,
    training_augmentation,
)
from lit_robust.paths import data_root


def _check_positive(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")


class RobustDataModule(LightningDataModule):
    """Base DataModule: validation split, balanced subsets, resizing, caching and loaders.

    Subclasses set the class attributes ``dataset_name``, ``layouts``, ``class_names``,
    ``mean``, ``std``, ``default_image_size`` and, where the defaults do not fit,
    ``default_resize``, ``horizontal_flip`` and ``num_classes``; a dataset torchvision can
    download also overrides :meth:`download_to`.

    Args:
        root: folder that holds the dataset folder (e.g. ``<root>/cifar10-jpeg``), or the
            dataset folder itself. Default: the ``LIT_ROBUST_DATA`` environment variable, else
            ``./data``.
        download: download the files with torchvision when they are missing (only datasets
            torchvision can download).
        batch_size: training batch size.
        eval_batch_size: batch size of the validation, test and predict loaders (default:
            ``batch_size``).
        num_workers: loader worker processes (0 loads in the main process).
        val_size: images of the training split held out for validation, class-stratified and
            fixed by ``split_seed``: an ``int`` count or a ``float`` fraction in [0, 1);
            0 disables validation. Model selection never uses the test split.
        split_seed: seed of the validation split and of every subset.
        train_fraction: keep this fraction (0, 1] of the training part, class-stratified.
        samples_per_class: keep exactly this many training images per class (balanced
            low-data regime); an error if a class has fewer.
        val_samples_per_class: keep at most this many validation images per class.
        test_samples_per_class: keep at most this many test images per class (fast
            evaluation).
        image_size: side ``s`` of the square images the loaders produce (default: the
            dataset's, e.g. 32 for CIFAR).
        resize: ``"none"`` (images must already be s×s), ``"resize"`` (resize to s×s),
            ``"resize_center_crop"`` (train ``RandomResizedCrop(s)``, evaluate
            ``Resize(s·256/224)`` + ``CenterCrop(s)``), or ``"auto"``: the dataset's default
            at its default size and ``"resize"`` at another size.
        crop_padding: reflect padding of the training random crop (``"none"``/``"resize"``).
        augment: augment training images (random crop or random resized crop, and a
            horizontal flip where the dataset allows it); otherwise they are prepared like
            evaluation images.
        cache_in_memory: decode the selected images once, at setup, and keep them in memory as
            ``uint8``; otherwise decode on every access (large datasets).
        pin_memory: pin batches in page-locked memory (only when CUDA is available).
    """

    dataset_name: ClassVar[str]
    layouts: ClassVar[tuple[DatasetLayout, ...]]
    class_names: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    default_image_size: ClassVar[int]
    default_resize: ClassVar[ResizePolicy] = "none"
    horizontal_flip: ClassVar[bool] = True

    def __init__(
        self,
        root: str | None = None,
        download: bool = False,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        val_size: int | float = 0.1,
        split_seed: int = 0,
        train_fraction: float | None = None,
        samples_per_class: int | None = None,
        val_samples_per_class: int | None = None,
        test_samples_per_class: int | None = None,
        image_size: int | None = None,
        resize: Literal["auto", "none", "resize", "resize_center_crop"] = "auto",
        crop_padding: int = 4,
        augment: bool = True,
        cache_in_memory: bool = True,
        pin_memory: bool = True,
    ) -> None:
        super().__init__()
        for name, value in [("batch_size", batch_size), ("eval_batch_size", eval_batch_size),
                            ("samples_per_class", samples_per_class),
                            ("val_samples_per_class", val_samples_per_class),
                            ("test_samples_per_class", test_samples_per_class),
                            ("image_size", image_size)]:
            _check_positive(name, value)
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if split_seed < 0:
            raise ValueError(f"split_seed must be >= 0, got {split_seed}")
        if crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0, got {crop_padding}")
        if isinstance(val_size, bool) or not (
            (isinstance(val_size, int) and val_size >= 0)
            or (isinstance(val_size, float) and 0 <= val_size < 1)
        ):
            raise ValueError(
                f"val_size must be an int count >= 0 or a float fraction in [0, 1), got "
                f"{val_size!r}"
            )
        if train_fraction is not None and samples_per_class is not None:
            raise ValueError("give train_fraction or samples_per_class, not both")
        if train_fraction is not None and not 0 < train_fraction <= 1:
            raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction}")
        if val_samples_per_class is not None and val_size == 0:
            raise ValueError("val_samples_per_class needs a validation split, but val_size=0")
        if resize not in ("auto", *RESIZE_POLICIES):
            raise ValueError(f"resize must be 'auto' or one of {RESIZE_POLICIES}, got {resize!r}")
        if download and not self.can_download:
            raise ValueError(
                f"download=True: {self.dataset_name} cannot be downloaded automatically; "
                f"download it from its official site and point root= at it"
            )
        # mean/std are recorded by the model, whose Normalize uses them (and may differ, e.g.
        # when fine-tuning a checkpoint trained with other statistics).
        self.save_hyperparameters(ignore=["mean", "std"])

        self.root = data_root(root)
        self.download = download
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.val_size = val_size
        self.split_seed = split_seed
        self.train_fraction = train_fraction
        self.samples_per_class = samples_per_class
        self.val_samples_per_class = val_samples_per_class
        self.test_samples_per_class = test_samples_per_class
        self.image_size: int = image_size or self.default_image_size
        self.resize: ResizePolicy = self._resolve_resize(resize)
        self.crop_padding = crop_padding
        self.augment = augment
        self.cache_in_memory = cache_in_memory
        self.pin_memory = pin_memory

        self.train_indices: Tensor | None = None
        self.val_indices: Tensor | None = None
        self.test_indices: Tensor | None = None
        self.train_dataset: ImageDataset | None = None
        self.val_dataset: ImageDataset | None = None
        self.test_dataset: ImageDataset | None = None
        self._location: tuple[DatasetLayout, Path] | None = None
        self._full_train: ImageSplit | None = None

    # ----------------------------------------------------------------- dataset description
    @property
    def num_classes(self) -> int:
        """Number of classes (labels are ``0 .. num_classes - 1``)."""
        return len(self.class_names)

    @property
    def can_download(self) -> bool:
        """Whether :meth:`download_to` can fetch this dataset."""
        return type(self).download_to is not RobustDataModule.download_to

    def download_to(self, root: Path) -> None:
        """Download the dataset into ``root`` (overridden where torchvision can download)."""
        raise NotImplementedError(f"{self.dataset_name} cannot be downloaded automatically")

    def _resolve_resize(self, resize: str) -> ResizePolicy:
        if resize != "auto":
            return resize
        if self.image_size == self.default_image_size or self.default_resize != "none":
            return self.default_resize
        return "resize"

    # ------------------------------------------------------------------------ locating
    def _locate(self) -> tuple[DatasetLayout, Path]:
        """The first layout found under ``root`` and its dataset folder."""
        if self._location is None:
            for layout in self.layouts:
                folder = layout.find(self.root)
                if folder is not None:
                    self._location = (layout, folder)
                    break
            else:
                raise DatasetNotFoundError(self._not_found_message())
        return self._location

    def _not_found_message(self, cause: str = "") -> str:
        hint = ("Or pass download=True to download it with torchvision."
                if self.can_download else
                f"{self.dataset_name} cannot be downloaded automatically: get it from its "
                f"official site and unpack it as above.")
        message = not_found_message(self.dataset_name, self.root, self.layouts, hint)
        return f"{message}\n{cause}" if cause else message

    def _read(self, split: Split) -> ImageSplit:
        """Labels and images of the full ``"train"`` or ``"test"`` split."""
        layout, folder = self._locate()
        images = layout.read(folder, split)
        low, high = int(images.labels.min()), int(images.labels.max())
        if low < 0 or high >= self.num_classes:
            raise ValueError(
                f"{self.dataset_name} {split} labels span {low}..{high}, outside "
                f"0..{self.num_classes - 1}; the files under {folder} do not match the dataset"
            )
        return images

    def prepare_data(self) -> None:
        """Download the files if asked to and they are missing; fail early if they are absent."""
        if self.download and not any(layout.find(self.root) for layout in self.layouts):
            try:
                self.download_to(self.root)
            except Exception as error:
                raise DatasetNotFoundError(
                    self._not_found_message(f"Downloading into {self.root} failed: {error!r}")
                ) from error
        self._locate()

    # -------------------------------------------------------------------------- splits
    def _split_train(self) -> None:
        """Carve the validation split, then subset the training part (indices into train)."""
        self._full_train = self._read("train")
        labels = self._full_train.labels.numpy()
        held_out = resolve_size(self.val_size, len(labels), "val_size")
        if held_out >= len(labels):
            raise ValueError(f"val_size={self.val_size} leaves none of the {len(labels)} "
                             f"{self.dataset_name} training images for training")
        train, val = stratified_split(labels, held_out, self.split_seed)
        if self.train_fraction is not None:
            train = train[stratified_subset(labels[train], self.train_fraction, self.split_seed,
                                            TRAIN_STREAM)]
        elif self.samples_per_class is not None:
            train = train[balanced_subset(labels[train], self.samples_per_class, self.split_seed,
                                          TRAIN_STREAM, strict=True)]
        if self.val_samples_per_class is not None:
            val = val[balanced_subset(labels[val], self.val_samples_per_class, self.split_seed,
                                      VAL_SUBSET_STREAM, strict=False)]
        self.train_indices = torch.from_numpy(train)
        self.val_indices = torch.from_numpy(val)

    def _evaluation_dataset(self, split: ImageSplit) -> ImageDataset:
        _, prepare = preparations(self.resize, self.image_size)
        return ImageDataset(split, prepare, to_float, self.cache_in_memory)

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets a stage needs (``fit``: train + val, ``validate``: val,
        ``test``/``predict``: test); each is built once."""
        if stage in (None, "fit", "validate") and self.train_indices is None:
            self._split_train()
        if stage in (None, "fit") and self.train_dataset is None:
            train_prepare, eval_prepare = preparations(self.resize, self.image_size)
            if self.augment:
                prepare = train_prepare
                transform = training_augmentation(self.resize, self.image_size,
                                                  self.crop_padding, self.horizontal_flip)
            else:
                prepare, transform = eval_prepare, to_float
            self.train_dataset = ImageDataset(self._full_train.subset(self.train_indices),
                                              prepare, transform, self.cache_in_memory)
        has_val = self.val_indices is not None and len(self.val_indices) > 0
        if stage in (None, "fit", "validate") and self.val_dataset is None and has_val:
            self.val_dataset = self._evaluation_dataset(self._full_train.subset(self.val_indices))
        if stage in (None, "test", "predict") and self.test_dataset is None:
            test = self._read("test")
            indices = np.arange(len(test))
            if self.test_samples_per_class is not None:
                indices = balanced_subset(test.labels.numpy(), self.test_samples_per_class,
                                          self.split_seed, TEST_SUBSET_STREAM, strict=False)
            self.test_indices = torch.from_numpy(indices)
            self.test_dataset = self._evaluation_dataset(test.subset(self.test_indices))

    # ------------------------------------------------------------------------- loaders
    def _loader(self, dataset: ImageDataset, shuffle: bool, batch_size: int) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches (augmented)."""
        if self.train_dataset is None:
            self.setup("fit")
        return self._loader(self.train_dataset, True, self.batch_size)

    def val_dataloader(self) -> DataLoader | list:
        """Batches of the held-out part of the training split; ``[]`` when ``val_size=0``."""
        if self.val_indices is None:
            self.setup("validate")
        if self.val_dataset is None:
            return []
        return self._loader(self.val_dataset, False, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        """Batches of the test split (or its balanced subset)."""
        if self.test_dataset is None:
            self.setup("test")
        return self._loader(self.test_dataset, False, self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        """The test loader."""
        return self.test_dataloader()
