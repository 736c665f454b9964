"""DataModules: one base (splits, subsets, transforms, caching, loaders) and one per dataset.

Every loader yields ``(images, labels)`` with ``float32`` images in [0, 1] (never normalized)
and ``int64`` labels; each DataModule exposes ``num_classes``, ``class_names``, ``mean``,
``std`` and ``image_size`` for the model.
"""

from lit_robust.data.base import RobustDataModule
from lit_robust.data.cifar import CIFAR10DataModule, CIFAR100DataModule
from lit_robust.data.folder import ImageFolderDataModule
from lit_robust.data.gtsrb import GTSRBDataModule
from lit_robust.data.images import ImageSplit, read_image
from lit_robust.data.layouts import DatasetLayout, DatasetNotFoundError
from lit_robust.data.svhn import SVHNDataModule
from lit_robust.data.tiny_imagenet import TinyImageNetDataModule

__all__ = [
    "CIFAR10DataModule", "CIFAR100DataModule", "DatasetLayout", "DatasetNotFoundError",
    "GTSRBDataModule", "ImageFolderDataModule", "ImageSplit", "RobustDataModule",
    "SVHNDataModule", "TinyImageNetDataModule", "read_image",
]
