"""DataModules: one base (splits, subsets, transforms, caching, loaders) and one per dataset.

Every loader yields ``(images, labels)`` with ``float32`` images in [0, 1] (never normalized)
and ``int64`` labels; each DataModule exposes ``num_classes``, ``class_names``, ``mean``,
``std`` and ``image_size`` for the model.
"""

from lit_robust.data.aircraft import FGVCAircraftDataModule
from lit_robust.data.base import RobustDataModule
from lit_robust.data.birdsnap import BirdsnapDataModule
from lit_robust.data.caltech import Caltech101DataModule, Caltech256DataModule
from lit_robust.data.cifar import CIFAR10DataModule, CIFAR100DataModule
from lit_robust.data.dtd import DTDDataModule
from lit_robust.data.flowers import Flowers102DataModule
from lit_robust.data.folder import ImageFolderDataModule
from lit_robust.data.food101 import Food101DataModule
from lit_robust.data.gtsrb import GTSRBDataModule
from lit_robust.data.images import ImageSplit, read_image
from lit_robust.data.layouts import DatasetLayout, DatasetNotFoundError
from lit_robust.data.pets import OxfordPetsDataModule
from lit_robust.data.stanford_cars import StanfordCarsDataModule
from lit_robust.data.sun397 import SUN397DataModule
from lit_robust.data.svhn import SVHNDataModule
from lit_robust.data.tiny_imagenet import TinyImageNetDataModule

__all__ = [
    "BirdsnapDataModule", "CIFAR10DataModule", "CIFAR100DataModule", "Caltech101DataModule",
    "Caltech256DataModule", "DTDDataModule", "DatasetLayout", "DatasetNotFoundError",
    "FGVCAircraftDataModule", "Flowers102DataModule", "Food101DataModule", "GTSRBDataModule",
    "ImageFolderDataModule", "ImageSplit", "OxfordPetsDataModule", "RobustDataModule",
    "SUN397DataModule", "SVHNDataModule", "StanfordCarsDataModule", "TinyImageNetDataModule",
    "read_image",
]
