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

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader

from lit_robust.data.datasets import ImageDataset
from lit_robust.data.device_cache import CachedBatch, DeviceImageCache, identity_collate
from lit_robust.data.images import ImageSplit
from lit_robust.data.layouts import DatasetLayout, DatasetNotFoundError, Split, not_found_message
from lit_robust.data.sampling import ResumableRandomSampler
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
    Preparation,
    ResizePolicy,
    preparations,
    to_float,
    training_augmentation,
)
from lit_robust.paths import data_root


class DataSettingError(ValueError):
    """A DataModule setting that contradicts the dataset found on disk (raised in ``setup``,
    before any training); the message says what to change."""


def loader_generator() -> torch.Generator:
    """The generator a DataLoader of this module draws its per-epoch base seed from.

    Without one, every ``iter(loader)`` (each epoch) draws from the global generator. An
    uninterrupted run does that after saving its end-of-epoch checkpoint, a run resumed from
    that checkpoint before restoring the saved global state, so the two would go on with
    different random attack starts. The order and augmentation do not use this seed (see
    :mod:`lit_robust.data.sampling`).
    """
    return torch.Generator().manual_seed(0)


def concatenate_splits(first: ImageSplit, second: ImageSplit) -> ImageSplit:
    """The images of ``first`` followed by those of ``second`` (both files or both decoded)."""
    labels = torch.cat([first.labels, second.labels])
    if first.files is not None and second.files is not None:
        return ImageSplit(labels, files=[*first.files, *second.files])
    if first.images is not None and second.images is not None:
        return ImageSplit(labels, images=torch.cat([first.images, second.images]))
    raise ValueError("cannot concatenate a split of files with a split of decoded images")


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
            0 disables validation; ``"official"`` uses the dataset's own validation split
            (only datasets that have one, e.g. Flowers-102; otherwise it is part of the
            training split). Model selection never uses the test split.
        split_seed: seed of the validation split and of every subset.
        train_fraction: keep this fraction (0, 1] of the training part, class-stratified.
        samples_per_class: keep exactly this many training images per class (balanced
            low-data regime); an error if a class has fewer.
        val_samples_per_class: keep at most this many validation images per class.
        test_samples_per_class: keep at most this many test images per class (fast
            evaluation), a class-balanced subset drawn with ``split_seed``.
        test_first_n: evaluate on the first ``n`` test images in the dataset's own order
            (RobustBench's convention for AutoAttack on a budget): file order for CIFAR's
            pickles, class by class and file name by file name for class folders.
        test_indices: evaluate on exactly these test images (indices into the full test
            split, in this order, no repeats). At most one of ``test_samples_per_class``,
            ``test_first_n`` and ``test_indices`` may be given.
        image_size: side ``s`` of the square images the loaders produce (default: the
            dataset's, e.g. 32 for CIFAR).
        resize: ``"none"`` (images must already be s×s), ``"resize"`` (resize to s×s),
            ``"resize_center_crop"`` (train ``RandomResizedCrop(s)``, evaluate
            ``Resize(s·256/224)`` + ``CenterCrop(s)``), or ``"auto"``: the dataset's default
            at its default size and ``"resize"`` at another size.
        crop_padding: reflect padding of the training random crop (``"none"``/``"resize"``).
        rotation: after crop and flip, rotate training images by a random angle of up to
            ± this many degrees (CARTL's official CIFAR loaders: 15); 0 (default) does not
            rotate. Not with ``device_cache``.
        augment: augment training images (random crop or random resized crop, and a
            horizontal flip where the dataset allows it); otherwise they are prepared like
            evaluation images.
        cache_in_memory: decode the selected images once, at setup, and keep them in memory as
            ``uint8``; otherwise decode on every access (large datasets).
        pin_memory: pin batches in page-locked memory (only when CUDA is available).
        device_cache: keep the prepared training images as one ``uint8`` tensor on the model's
            device and crop and flip them there, per batch
            (:mod:`lit_robust.data.device_cache`): the training loader then yields only
            indices and crop offsets (in the main process; ``num_workers`` applies to the
            evaluation loaders), and :meth:`on_after_batch_transfer` builds the images. For
            datasets that fit in device memory (CIFAR, SVHN, GTSRB, Tiny-ImageNet); not with
            ``resize="resize_center_crop"``.
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
        val_size: int | float | Literal["official"] = 0.1,
        split_seed: int = 0,
        train_fraction: float | None = None,
        samples_per_class: int | None = None,
        val_samples_per_class: int | None = None,
        test_samples_per_class: int | None = None,
        test_first_n: int | None = None,
        test_indices: Sequence[int] | None = None,
        image_size: int | None = None,
        resize: Literal["auto", "none", "resize", "resize_center_crop"] = "auto",
        crop_padding: int = 4,
        rotation: float = 0.0,
        augment: bool = True,
        cache_in_memory: bool = True,
        pin_memory: bool = True,
        device_cache: bool = False,
    ) -> None:
        super().__init__()
        for name, value in [("batch_size", batch_size), ("eval_batch_size", eval_batch_size),
                            ("samples_per_class", samples_per_class),
                            ("val_samples_per_class", val_samples_per_class),
                            ("test_samples_per_class", test_samples_per_class),
                            ("test_first_n", test_first_n),
                            ("image_size", image_size)]:
            _check_positive(name, value)
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if split_seed < 0:
            raise ValueError(f"split_seed must be >= 0, got {split_seed}")
        if crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0, got {crop_padding}")
        if rotation < 0:
            raise ValueError(f"rotation must be >= 0 degrees, got {rotation}")
        if device_cache and rotation > 0:
            raise ValueError("device_cache=True crops and flips on the device but does not "
                             "rotate; pass rotation=0 or device_cache=False")
        if isinstance(val_size, bool) or not (
            val_size == "official"
            or (isinstance(val_size, int) and val_size >= 0)
            or (isinstance(val_size, float) and 0 <= val_size < 1)
        ):
            raise ValueError(
                f"val_size must be an int count >= 0 or a float fraction in [0, 1), or "
                f"'official', got {val_size!r}"
            )
        if train_fraction is not None and samples_per_class is not None:
            raise ValueError("give train_fraction or samples_per_class, not both")
        if train_fraction is not None and not 0 < train_fraction <= 1:
            raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction}")
        test_subsets = [name for name, value in [
            ("test_samples_per_class", test_samples_per_class), ("test_first_n", test_first_n),
            ("test_indices", test_indices)] if value is not None]
        if len(test_subsets) > 1:
            raise ValueError(f"give at most one of {', '.join(test_subsets)}: each of them chooses "
                             "the test images")
        if test_indices is not None:
            test_indices = [int(i) for i in test_indices]
            if not test_indices or min(test_indices) < 0 or len(set(test_indices)) < len(
                    test_indices):
                raise ValueError("test_indices must be a non-empty list of distinct indices >= 0 "
                                 "into the test split")
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
        self.test_first_n = test_first_n
        self.test_indices_arg = test_indices
        self.image_size: int = image_size or self.default_image_size
        self.resize: ResizePolicy = self._resolve_resize(resize)
        if device_cache and self.resize == "resize_center_crop":
            raise ValueError(
                f"device_cache=True crops and flips cached images of one size, but "
                f"{self.dataset_name} uses resize='resize_center_crop' (random resized crops); "
                "pass resize='resize' or device_cache=False"
            )
        self.crop_padding = crop_padding
        self.rotation = rotation
        self.augment = augment
        self.cache_in_memory = cache_in_memory
        self.pin_memory = pin_memory
        self.device_cache = device_cache

        self.train_indices: Tensor | None = None
        self.val_indices: Tensor | None = None
        self.test_indices: Tensor | None = None
        self.train_dataset: ImageDataset | DeviceImageCache | None = None
        self.val_dataset: ImageDataset | None = None
        self.test_dataset: ImageDataset | None = None
        self._location: tuple[DatasetLayout, Path] | None = None
        self._full_train: ImageSplit | None = None
        self._order_seed: int | None = None
        self._resume_at: tuple[int, int] | None = None

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

    def _not_found_message(self, download_error: BaseException | None = None) -> str:
        if download_error is not None:
            hint = (f"Downloading into {self.root} failed: {download_error!r}. Check the "
                    "network connection and the free space and run again with download=True, "
                    "or get the files from the dataset's official site and unpack them as "
                    "above.")
        elif self.can_download:
            hint = "Or pass download=True to download it with torchvision."
        else:
            hint = (f"{self.dataset_name} cannot be downloaded automatically: get it from its "
                    "official site and unpack it as above.")
        return not_found_message(self.dataset_name, self.root, self.layouts, hint)

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
                    self._not_found_message(download_error=error)
                ) from error
        self._locate()

    # -------------------------------------------------------------------------- splits
    def _read_training(self) -> tuple[ImageSplit, np.ndarray | None]:
        """Every training image (an official validation split included) and the indices of
        that official validation split (``None`` when the layout found has none)."""
        with_val = [layout.description for layout in self.layouts if layout.official_val]
        if not with_val or not self._locate()[0].official_val:
            if self.val_size == "official":
                where = f" (only {' and '.join(with_val)} has one)" if with_val else ""
                raise ValueError(
                    f"val_size='official', but {self.dataset_name} as read from {self.root} has "
                    f"no official validation split{where}; give val_size as a count or a "
                    f"fraction of the training split"
                )
            return self._read("train"), None
        train, val = self._read("train"), self._read("val")
        return concatenate_splits(train, val), np.arange(len(train), len(train) + len(val))

    def _split_train(self) -> None:
        """Carve the validation split, then subset the training part (indices into train)."""
        self._full_train, official_val = self._read_training()
        labels = self._full_train.labels.numpy()
        if self.val_size == "official":
            train = np.setdiff1d(np.arange(len(labels)), official_val)
            val = official_val
        else:
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
            if self.device_cache:
                self.train_dataset = self._device_cache(eval_prepare)
            else:
                if self.augment:
                    prepare = train_prepare
                    transform = training_augmentation(self.resize, self.image_size,
                                                      self.crop_padding, self.horizontal_flip,
                                                      self.rotation)
                else:
                    prepare, transform = eval_prepare, to_float
                self.train_dataset = ImageDataset(self._full_train.subset(self.train_indices),
                                                  prepare, transform, self.cache_in_memory)
        has_val = self.val_indices is not None and len(self.val_indices) > 0
        if stage in (None, "fit", "validate") and self.val_dataset is None and has_val:
            self.val_dataset = self._evaluation_dataset(self._full_train.subset(self.val_indices))
        if stage in (None, "test", "predict") and self.test_dataset is None:
            test = self._read("test")
            self.test_indices = torch.from_numpy(self._test_subset(test))
            self.test_dataset = self._evaluation_dataset(test.subset(self.test_indices))

    def _device_cache(self, prepare: Preparation) -> DeviceImageCache:
        """The training images, prepared for evaluation and decoded once, for the device."""
        split = self._full_train.subset(self.train_indices)
        return DeviceImageCache.from_dataset(
            ImageDataset(split, prepare, to_float, cache=True), self.image_size,
            self.crop_padding if self.augment else 0, self.augment and self.horizontal_flip)

    def _test_subset(self, test: ImageSplit) -> np.ndarray:
        """Indices of the evaluated test images (see the subset arguments)."""
        if self.test_samples_per_class is not None:
            return balanced_subset(test.labels.numpy(), self.test_samples_per_class,
                                   self.split_seed, TEST_SUBSET_STREAM, strict=False)
        if self.test_first_n is not None:
            if self.test_first_n > len(test):
                raise DataSettingError(
                    f"test_first_n={self.test_first_n} exceeds the {len(test)} "
                    f"{self.dataset_name} test images in {self._folder()}; choose "
                    f"test_first_n <= {len(test)}, or drop it to test on all of them")
            return np.arange(self.test_first_n)
        if self.test_indices_arg is not None:
            indices = np.asarray(self.test_indices_arg, dtype=np.int64)
            if indices.max() >= len(test):
                raise DataSettingError(
                    f"test_indices holds {int(indices.max())}, but the {self.dataset_name} test "
                    f"split in {self._folder()} has {len(test)} images (indices "
                    f"0..{len(test) - 1}); fix the index list")
            return indices
        return np.arange(len(test))

    def test_subset_rule(self) -> str:
        """How the test images are chosen, in words (recorded in the robustness report)."""
        if self.test_samples_per_class is not None:
            return (f"at most {self.test_samples_per_class} per class, class-balanced, drawn "
                    f"with split_seed={self.split_seed}")
        if self.test_first_n is not None:
            return f"the first {self.test_first_n} test images (indices 0..{self.test_first_n - 1})"
        if self.test_indices_arg is not None:
            return f"an explicit list of {len(self.test_indices_arg)} test indices"
        return "the whole test split"

    def _folder(self) -> Path:
        """The dataset folder read (the root until the layout is found)."""
        folder = self._location[1] if self._location is not None else self.root
        return Path(folder).resolve()

    def describe_test_data(self) -> dict[str, object]:
        """Which test images an evaluation saw: dataset, folder, subset rule, count, indices."""
        indices = self.test_indices.tolist() if self.test_indices is not None else None
        return {
            "dataset": self.dataset_name,
            "folder": str(self._folder()),
            "subset_rule": self.test_subset_rule(),
            "test_images": len(indices) if indices is not None else None,
            "indices": indices if self.test_indices_arg is not None else None,
        }

    # ---------------------------------------------------------------- resumable training
    def state_dict(self) -> dict[str, int]:
        """The training order's seed and, in a checkpoint saved within an epoch, the position.

        Saved in every checkpoint; :meth:`load_state_dict` makes a resumed run continue with
        the very batches (and augmentations) an uninterrupted run would see.
        """
        if self._order_seed is None:
            return {}
        state = {"order_seed": self._order_seed}
        trainer = self.trainer
        if trainer is not None and trainer.training:
            done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
            if 0 < done < trainer.num_training_batches:
                state.update(epoch=trainer.current_epoch, batches_done=done)
        return state

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Restore the training order (and the position within an epoch) of a checkpoint."""
        if "order_seed" in state_dict:
            self._order_seed = int(state_dict["order_seed"])
        if "batches_done" in state_dict:
            self._resume_at = (int(state_dict["epoch"]),
                               int(state_dict["batches_done"]) * self.batch_size)
            # the order is resumable: Lightning's warning about a mid-epoch checkpoint of a
            # loader without state does not apply
            warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that "
                                    "ended before the epoch ended")

    # ------------------------------------------------------------------------- loaders
    def _loader(self, dataset: ImageDataset, batch_size: int,
                sampler: ResumableRandomSampler | None = None) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            generator=loader_generator(),
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Build the images of a device-cache batch on its device (other batches unchanged).

        Lightning calls this after moving each batch to the device; outside Lightning, call it
        on the batches of :meth:`train_dataloader` when ``device_cache=True``.
        """
        if not isinstance(batch, CachedBatch):
            return batch
        images, labels = self.train_dataset.materialize(batch)
        if self.trainer is not None:  # the dtype cast Lightning gives ordinary batches
            images = self.trainer.precision_plugin.convert_input(images)
        return images, labels

    def teardown(self, stage: str) -> None:
        """Free the device copy of the device cache after fitting."""
        if stage == "fit" and isinstance(self.train_dataset, DeviceImageCache):
            self.train_dataset.release()

    def train_dataloader(self) -> DataLoader:
        """Shuffled, augmented training batches in a resumable order
        (:class:`~lit_robust.data.sampling.ResumableRandomSampler`): the order's seed is drawn
        from the global generator once (after ``seed_everything``) and kept in checkpoints."""
        if self.train_dataset is None:
            self.setup("fit")
        if self._order_seed is None:
            self._order_seed = int(torch.randint(0, 2**31 - 1, ()).item())
        sampler = ResumableRandomSampler(len(self.train_dataset), self._order_seed)
        if self._resume_at is not None:
            sampler.start_at(*self._resume_at)
            self._resume_at = None
        if isinstance(self.train_dataset, DeviceImageCache):
            return DataLoader(self.train_dataset, batch_size=self.batch_size, sampler=sampler,
                              collate_fn=identity_collate, generator=loader_generator())
        return self._loader(self.train_dataset, self.batch_size, sampler)

    def val_dataloader(self) -> DataLoader | list:
        """Batches of the held-out part of the training split; ``[]`` when ``val_size=0``."""
        if self.val_indices is None:
            self.setup("validate")
        if self.val_dataset is None:
            return []
        return self._loader(self.val_dataset, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        """Batches of the test split (or its balanced subset)."""
        if self.test_dataset is None:
            self.setup("test")
        return self._loader(self.test_dataset, self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        """The test loader."""
        return self.test_dataloader()
