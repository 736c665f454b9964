"""Per-image preparation and augmentation on ``uint8`` tensors; outputs are floats in [0, 1].

An image goes through two steps. A *preparation* is deterministic (check the size, resize,
resize + center crop) and may be applied once when the dataset is cached in memory; an
*augmentation* (random crop, flip, random resized crop) runs on every access, then the image
becomes ``float32`` in [0, 1]. Images are never normalized here: normalization is the first
module of the model.

Resize policies (``image_size`` = s):

- ``"none"``: images must already be s×s. Training: random crop with reflect padding + flip.
- ``"resize"``: every image is resized to s×s. Training: as ``"none"``.
- ``"resize_center_crop"`` (the transfer-learning protocol of Shafahi et al. / Salman et al.):
  training ``RandomResizedCrop(s)`` + flip; evaluation ``Resize(s·256/224)`` +
  ``CenterCrop(s)``.
"""

from __future__ import annotations

import functools
from typing import Literal

import torch
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

ResizePolicy = Literal["none", "resize", "resize_center_crop"]
RESIZE_POLICIES: tuple[str, ...] = ("none", "resize", "resize_center_crop")


def to_float(image: Tensor) -> Tensor:
    """``uint8`` [0, 255] → new ``float32`` tensor in [0, 1]."""
    return image.to(torch.float32).div_(255)


@functools.lru_cache(maxsize=64)
def _reflect_index(length: int, padding: int) -> Tensor:
    """Source index of every position of a reflect-padded axis (edge pixel not repeated)."""
    index = torch.arange(-padding, length + padding).abs()
    return torch.where(index >= length, 2 * (length - 1) - index, index)


class KeepSize:
    """Preparation of policy ``"none"``: check that images already have the expected size."""

    def __init__(self, size: int) -> None:
        self.size = size

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return height, width

    def __call__(self, image: Tensor) -> Tensor:
        if tuple(image.shape[-2:]) != (self.size, self.size):
            raise ValueError(
                f"an image is {image.shape[-2]}x{image.shape[-1]}, but image_size={self.size} "
                f"with resize='none' needs {self.size}x{self.size} images; pass "
                f"resize='resize' (or 'resize_center_crop') to resize them"
            )
        return image


class Resize:
    """Preparation of policy ``"resize"``: resize to ``size``×``size`` (antialiased)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return self.size, self.size

    def __call__(self, image: Tensor) -> Tensor:
        return TF.resize(image, [self.size, self.size], antialias=True)


class ResizeCenterCrop:
    """Evaluation preparation of ``"resize_center_crop"``: shorter side to ``resize_to``, then
    the central ``size``×``size`` crop."""

    def __init__(self, size: int, resize_to: int) -> None:
        self.size = size
        self.resize_to = resize_to

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return self.size, self.size

    def __call__(self, image: Tensor) -> Tensor:
        image = TF.resize(image, self.resize_to, antialias=True)
        return TF.center_crop(image, [self.size, self.size])


class Unchanged:
    """Training preparation of ``"resize_center_crop"``: keep the decoded image as it is."""

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return height, width

    def __call__(self, image: Tensor) -> Tensor:
        return image


Preparation = KeepSize | Resize | ResizeCenterCrop | Unchanged


class RandomCropFlip:
    """``RandomCrop(size, padding, padding_mode="reflect")`` then an optional horizontal flip,
    then conversion to float, in one indexing step.

    Equivalent to the torchvision.transforms.v2 pipeline but several times cheaper per image,
    which matters when a CPU process augments CIFAR-sized images one at a time.
    """

    def __init__(self, size: int, padding: int, flip: bool) -> None:
        self.size = size
        self.padding = padding
        self.flip = flip

    def __call__(self, image: Tensor) -> Tensor:
        height, width = image.shape[-2:]
        if self.padding >= min(height, width) or min(height, width) + 2 * self.padding < self.size:
            raise ValueError(
                f"cannot take a {self.size}x{self.size} crop with reflect padding "
                f"{self.padding} from a {height}x{width} image"
            )
        u_top, u_left, u_flip = torch.rand(3).tolist()
        top = int(u_top * (height + 2 * self.padding - self.size + 1))
        left = int(u_left * (width + 2 * self.padding - self.size + 1))
        rows = _reflect_index(height, self.padding)[top: top + self.size]
        cols = _reflect_index(width, self.padding)[left: left + self.size]
        if self.flip and u_flip < 0.5:
            cols = cols.flip(0)
        return to_float(image.index_select(-2, rows).index_select(-1, cols))


def training_augmentation(
    policy: ResizePolicy, size: int, padding: int, flip: bool, rotation: float = 0.0
) -> RandomCropFlip | v2.Compose:
    """The random augmentation of training images (ends with conversion to float).

    Args:
        policy: the resize policy (``resize_center_crop``: random resized crop, otherwise a
            random crop with reflect padding).
        size: output side.
        padding: reflect padding of the random crop.
        flip: random horizontal flips.
        rotation: then a random rotation by up to ± this many degrees (nearest neighbour,
            corners filled with 0), as ``RandomRotation(15)`` in CARTL's official CIFAR
            loaders; 0 rotates nothing.
    """
    if rotation < 0:
        raise ValueError(f"rotation must be >= 0 degrees, got {rotation}")
    turn = [v2.RandomRotation(rotation)] if rotation > 0 else []
    if policy == "resize_center_crop":
        steps = [v2.RandomResizedCrop(size, antialias=True)]
        if flip:
            steps.append(v2.RandomHorizontalFlip())
        return v2.Compose([*steps, *turn, v2.ToDtype(torch.float32, scale=True)])
    crop = RandomCropFlip(size, padding, flip)
    return v2.Compose([crop, *turn]) if turn else crop


def preparations(policy: ResizePolicy, size: int) -> tuple[Preparation, Preparation]:
    """``(training preparation, evaluation preparation)`` of a resize policy."""
    if policy == "none":
        return KeepSize(size), KeepSize(size)
    if policy == "resize":
        return Resize(size), Resize(size)
    return Unchanged(), ResizeCenterCrop(size, round(size * 256 / 224))
