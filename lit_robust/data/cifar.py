"""CIFAR-10 and CIFAR-100 (Krizhevsky, 2009): torchvision's pickles or class folders."""

from __future__ import annotations

import pickle
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets

from lit_robust.data.base import RobustDataModule
from lit_robust.data.images import DataFileError, ImageSplit, read_class_folders
from lit_robust.data.layouts import DatasetLayout, Split

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
CIFAR100_CLASSES = tuple(
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus "
    "butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch "
    "crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house "
    "kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle "
    "mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree "
    "plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew "
    "skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank "
    "telephone television tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf "
    "woman worm".split()
)
_FOLDER_TREE = "{train,test}/<class name>/*.{jpg,png}"


_PICKLE_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
}


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles only what CIFAR batches hold: dicts, lists, strings, numbers, NumPy arrays.

    A plain ``pickle.load`` runs whatever code a crafted data file names; this refuses every
    other global.
    """

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in _PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: a CIFAR batch holds only dicts, lists, strings, "
            "numbers and NumPy arrays"
        )


def load_cifar_batch(path: Path) -> dict:
    """One CIFAR pickle, read with the restricted :class:`_CifarUnpickler`.

    Raises:
        DataFileError: naming the file, when it is not a CIFAR batch (or tries to load code).
    """
    try:
        with open(path, "rb") as handle:
            entry = _CifarUnpickler(handle, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise DataFileError(f"{path} is not a readable CIFAR batch: {error}") from error
    if not isinstance(entry, dict):
        raise DataFileError(f"{path} is not a CIFAR batch: it holds a {type(entry).__name__}, "
                            "not a dict")
    return entry


def read_cifar_pickles(
    folder: Path, split: Split, files: dict[str, tuple[str, ...]], label_key: str
) -> ImageSplit:
    """Read CIFAR python pickles (dicts with ``data``: N×3072 uint8, and ``label_key``)."""
    arrays, labels = [], []
    for name in files[split]:
        entry = load_cifar_batch(folder / name)
        entry = {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}
        if "data" not in entry or label_key not in entry:
            raise DataFileError(f"{folder / name} is not a CIFAR batch: expected the keys data "
                                f"and {label_key}, found {sorted(map(str, entry))}")
        data = np.asarray(entry["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(entry[label_key]):
            raise DataFileError(f"{folder / name} is not a CIFAR batch: expected data of N x 3072 "
                                f"bytes and N {label_key}, found data of shape {data.shape} and "
                                f"{len(entry[label_key])} {label_key}")
        arrays.append(data.reshape(-1, 3, 32, 32))
        labels.extend(entry[label_key])
    return ImageSplit(torch.tensor(labels, dtype=torch.int64),
                      images=torch.from_numpy(np.concatenate(arrays)))


def read_split_folders(folder: Path, split: Split, class_names: tuple[str, ...]) -> ImageSplit:
    """Read ``<folder>/<split>/<class name>/*`` and check the class folders' names."""
    return read_class_folders(folder / split, expected_classes=class_names)[1]


_CIFAR10_PICKLES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
_CIFAR100_PICKLES = {"train": ("train",), "test": ("test",)}


class CIFAR10DataModule(RobustDataModule):
    """CIFAR-10: 10 classes, 50,000 training and 10,000 test images of 32×32 px.

    Reads torchvision's ``cifar-10-batches-py/`` pickles or class folders
    ``{train,test}/<class name>/*`` (e.g. the ``cifar10-jpeg`` copy); ``download=True`` fetches
    the pickles with torchvision. See :class:`RobustDataModule` for the arguments.
    """

    dataset_name = "CIFAR-10"
    class_names = CIFAR10_CLASSES
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)
    default_image_size = 32
    layouts = (
        DatasetLayout("torchvision's CIFAR-10 pickles (cifar-10-batches-py/)",
                      "{data_batch_1, ..., data_batch_5, test_batch}",
                      ("cifar-10-batches-py",), (*_CIFAR10_PICKLES["train"], "test_batch"),
                      partial(read_cifar_pickles, files=_CIFAR10_PICKLES, label_key="labels")),
        DatasetLayout("class folders", _FOLDER_TREE, ("cifar10-jpeg", "cifar10", "cifar-10"),
                      ("train/", "test/"),
                      partial(read_split_folders, class_names=CIFAR10_CLASSES)),
    )

    def download_to(self, root: Path) -> None:
        datasets.CIFAR10(str(root), train=True, download=True)


class CIFAR100DataModule(RobustDataModule):
    """CIFAR-100 (fine labels): 100 classes, 50,000 training and 10,000 test images of 32×32.

    Reads torchvision's ``cifar-100-python/`` pickles or class folders
    ``{train,test}/<class name>/*``; ``download=True`` fetches the pickles with torchvision.
    See :class:`RobustDataModule` for the arguments.
    """

    dataset_name = "CIFAR-100"
    class_names = CIFAR100_CLASSES
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)
    default_image_size = 32
    layouts = (
        DatasetLayout("torchvision's CIFAR-100 pickles (cifar-100-python/)", "{train, test}",
                      ("cifar-100-python",), ("train", "test"),
                      partial(read_cifar_pickles, files=_CIFAR100_PICKLES,
                              label_key="fine_labels")),
        DatasetLayout("class folders", _FOLDER_TREE, ("cifar100-jpeg", "cifar100", "cifar-100"),
                      ("train/", "test/"),
                      partial(read_split_folders, class_names=CIFAR100_CLASSES)),
    )

    def download_to(self, root: Path) -> None:
        datasets.CIFAR100(str(root), train=True, download=True)
