"""Images of one split, decoded already or as files, and the decoding of image files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.io import ImageReadMode, decode_image, read_file

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_TORCHVISION_DECODES = (".jpg", ".jpeg", ".png")


class DataFileError(ValueError):
    """A file of a dataset cannot be read: an image that does not decode, a list or
    annotation file with a malformed entry; the message names the file (and the line)."""


def read_image(path: str | Path) -> Tensor:
    """Decode an image file to a ``uint8`` RGB tensor of shape ``(3, H, W)``.

    JPEG and PNG go through ``torchvision.io`` (fast); other formats (PPM, BMP, ...) through
    PIL. Grayscale, palette and CMYK images are converted to RGB.

    Raises:
        DataFileError: naming the file, when it is corrupt, truncated or not an image.
    """
    path = str(path)
    try:
        if path.lower().endswith(_TORCHVISION_DECODES):
            return decode_image(read_file(path), mode=ImageReadMode.RGB)
        with Image.open(path) as image:
            array = np.array(image.convert("RGB"))
    except (RuntimeError, OSError, ValueError, SyntaxError) as error:
        raise DataFileError(
            f"cannot decode the image file {path} ({type(error).__name__}: {error}); the file is "
            "corrupt, truncated or not an image: replace or delete it"
        ) from error
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


@dataclass(frozen=True)
class ImageSplit:
    """The labels of one split with its images: a decoded ``uint8`` tensor or image files.

    Attributes:
        labels: ``int64`` tensor of shape ``(N,)``.
        images: ``uint8`` tensor of shape ``(N, 3, H, W)``, or ``None`` when ``files`` is set.
        files: ``N`` image paths, or ``None`` when ``images`` is set.
    """

    labels: Tensor
    images: Tensor | None = None
    files: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if (self.images is None) == (self.files is None):
            raise ValueError("an ImageSplit holds either decoded images or files, exactly one")
        if self.labels.dtype != torch.int64 or self.labels.dim() != 1:
            raise ValueError(f"labels must be a 1-D int64 tensor, got {self.labels.dtype} "
                             f"of shape {tuple(self.labels.shape)}")
        if len(self.labels) == 0:
            raise ValueError("the split holds no images")
        if self.images is not None and (
            self.images.dtype != torch.uint8 or self.images.dim() != 4 or self.images.shape[1] != 3
        ):
            raise ValueError(f"images must be uint8 of shape (N, 3, H, W), got "
                             f"{self.images.dtype} {tuple(self.images.shape)}")
        if len(self) != len(self.labels):
            raise ValueError(f"{len(self)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.images) if self.images is not None else len(self.files)

    def subset(self, indices: Tensor) -> ImageSplit:
        """The images at ``indices`` (an int64 tensor), in that order."""
        if self.images is not None:
            return ImageSplit(self.labels[indices], images=self.images[indices])
        files = [self.files[i] for i in indices.tolist()]
        return ImageSplit(self.labels[indices], files=files)

    def load(self, index: int) -> Tensor:
        """The ``uint8`` image ``(3, H, W)`` at ``index`` (decoded from its file if needed)."""
        if self.images is not None:
            return self.images[index]
        return read_image(self.files[index])


def class_folder_names(directory: Path) -> list[str]:
    """Sorted names of the sub-folders of ``directory`` (the classes of a class-folder tree)."""
    return sorted(entry.name for entry in os.scandir(directory) if entry.is_dir())


def read_class_folders(
    directory: Path, expected_classes: tuple[str, ...] | None = None
) -> tuple[list[str], ImageSplit]:
    """Read a class-folder tree ``<directory>/<class name>/**/<image>``.

    Classes are the sorted names of the sub-folders (as ``torchvision.datasets.ImageFolder``
    orders them); files are every image under a class folder, sorted.

    Args:
        directory: the folder that holds one folder per class.
        expected_classes: when given, the class folders must be exactly these names.

    Returns:
        ``(class_names, split)``.

    Raises:
        ValueError: when the class folders differ from ``expected_classes``.
        FileNotFoundError: when the directory has no image.
    """
    class_names = class_folder_names(directory)
    if expected_classes is not None and tuple(class_names) != tuple(expected_classes):
        raise ValueError(
            f"the class folders in {directory} are {class_names}, expected the "
            f"{len(expected_classes)} classes {list(expected_classes)}"
        )
    files: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(class_names):
        for parent, _, names in sorted(os.walk(directory / name, followlinks=True)):
            found = sorted(n for n in names if n.lower().endswith(IMAGE_EXTENSIONS))
            files.extend(os.path.join(parent, n) for n in found)
            labels.extend([label] * len(found))
    if not files:
        raise FileNotFoundError(
            f"no images in {directory}: expected {directory}/<class name>/<image> with one of "
            f"the extensions {', '.join(IMAGE_EXTENSIONS)}"
        )
    return class_names, ImageSplit(torch.tensor(labels, dtype=torch.int64), files=files)
