"""The torch ``Dataset`` every DataModule serves: prepared, augmented images in [0, 1]."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.data import Dataset

from lit_robust.data.images import ImageSplit
from lit_robust.data.sampling import SampleKey
from lit_robust.data.transforms import Preparation

SMALL_IMAGE_PIXELS = 64 * 64


class ImageDataset(Dataset):
    """Images of an :class:`ImageSplit` as ``(float image in [0, 1], int64 label)`` pairs.

    With ``cache=True`` every image is decoded once, here, and kept in memory as ``uint8``.
    The cache holds the prepared image when it is small (at most 64×64 px) or not larger than
    the decoded one (checking the size, downscaling, center-cropping); otherwise it holds the
    decoded image, prepared again on each access (e.g. CIFAR upsampled to 224 px stays 32 px in
    memory). Equal-sized cached images are stacked into one tensor.

    Args:
        split: the labels and the images (decoded or files).
        prepare: deterministic preparation (see :mod:`lit_robust.data.transforms`).
        transform: random augmentation plus conversion to float; maps ``uint8`` to float.
        cache: decode everything now and keep it in memory.
    """

    def __init__(
        self,
        split: ImageSplit,
        prepare: Preparation,
        transform: Callable[[Tensor], Tensor],
        cache: bool,
    ) -> None:
        self.labels = split.labels
        self.prepare = prepare
        self.transform = transform
        self._split: ImageSplit | None = None if cache else split
        self._images: Tensor | list[Tensor] = []
        self._deferred: list[bool] = []
        if cache:
            self._cache(split)

    def _cache_prepared(self, image: Tensor) -> bool:
        height, width = image.shape[-2:]
        new_height, new_width = self.prepare.output_size(height, width)
        return new_height * new_width <= max(height * width, SMALL_IMAGE_PIXELS)

    def _cache(self, split: ImageSplit) -> None:
        if split.images is not None:
            prepare_now = self._cache_prepared(split.images[0])
            self._images = self.prepare(split.images) if prepare_now else split.images
            self._deferred = [not prepare_now] * len(split)
            return
        images: list[Tensor] = []
        for index in range(len(split)):
            image = split.load(index)
            prepare_now = self._cache_prepared(image)
            images.append(self.prepare(image) if prepare_now else image)
            self._deferred.append(not prepare_now)
        if len({tuple(image.shape) for image in images}) == 1:
            self._images = torch.stack(images)
        else:
            self._images = images

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, index: int) -> Tensor:
        """The prepared ``uint8`` image ``(3, H, W)`` before augmentation."""
        if self._split is not None:
            return self.prepare(self._split.load(index))
        image = self._images[index]
        return self.prepare(image) if self._deferred[index] else image

    def __getitem__(self, key: int | SampleKey) -> tuple[Tensor, Tensor]:
        """The augmented image and label at an index, or at a :class:`SampleKey`, whose seed
        then draws the augmentation (the global random state is left untouched)."""
        if not isinstance(key, SampleKey):
            return self.transform(self.image(key)), self.labels[key]
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(key.seed)  # CPU only: CUDA streams untouched
            image = self.transform(self.image(key.index))
        return image, self.labels[key.index]
