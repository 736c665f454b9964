"""Training images kept on the model's device as ``uint8`` and augmented there, per batch.

With ``device_cache=True`` a DataModule decodes and prepares its training split once into one
``uint8`` tensor ``(N, 3, s, s)``. Its training loader then yields only a
:class:`CachedBatch` per batch: the indices of the images and their crop offsets and flips, a
few bytes per image. Lightning moves that batch to the device and calls the DataModule's
``on_after_batch_transfer``, where :meth:`DeviceImageCache.materialize` gathers the crops from
the copy of the images on that device (rows, then columns) and turns them into ``float32`` in
[0, 1]. Decoding, cropping and flipping never run on the CPU during training, so the loader is
not the bottleneck of a fast accelerator.

The augmentation is the one :class:`~lit_robust.data.transforms.RandomCropFlip` applies
(random crop of the reflect-padded image, then a horizontal flip with probability ½); without
augmentation the images are exactly those of the ordinary loader. The order comes from the same
:class:`~lit_robust.data.sampling.ResumableRandomSampler`, so resuming mid-epoch and
Lightning's distributed sampler (each DDP rank its shard of the indices) work as for the
ordinary loader. A sample's crop and flip are a function of its per-sample seed alone
(SplitMix64, Steele et al., OOPSLA 2014), computed on the CPU: the same seed gives the same
augmentation on every device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from lit_robust.data.datasets import ImageDataset
from lit_robust.data.sampling import SampleKey
from lit_robust.data.transforms import _reflect_index

_GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_FIELD_BITS = 24


class CachedBatch(NamedTuple):
    """What the device-cache loader yields per batch (``int64``/``bool`` tensors of shape ``(B,)``).

    Attributes:
        indices: positions of the images in the cache.
        top: first row of each crop in the reflect-padded image.
        left: first column of each crop in the reflect-padded image.
        flip: whether each crop is mirrored horizontally.
    """

    indices: Tensor
    top: Tensor
    left: Tensor
    flip: Tensor


def splitmix64(seeds: np.ndarray) -> np.ndarray:
    """SplitMix64's output for every seed: 64 well-mixed bits (``uint64``, wrapping arithmetic)."""
    z = seeds.astype(np.uint64) + _GOLDEN_GAMMA
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def identity_collate(batch: CachedBatch) -> CachedBatch:
    """The loader's ``collate_fn``: :meth:`DeviceImageCache.__getitems__` batches already."""
    return batch


class DeviceImageCache(Dataset):
    """Prepared ``uint8`` training images with their labels, gathered and augmented on a device.

    As a torch ``Dataset`` it maps a list of :class:`~lit_robust.data.sampling.SampleKey` to one
    :class:`CachedBatch` (``__getitems__``); :meth:`materialize` turns that batch, on any
    device, into ``(float32 images in [0, 1], int64 labels)``.

    Args:
        images: ``uint8`` tensor ``(N, 3, H, W)``, prepared (checked or resized) already.
        labels: ``int64`` tensor ``(N,)``.
        size: side ``s`` of the square crops.
        padding: reflect padding of the random crop (0 with ``size == H == W``: no crop).
        flip: mirror each crop horizontally with probability ½.

    Raises:
        ValueError: when the images are not ``uint8 (N, 3, H, W)`` with one label each, or no
            ``size``×``size`` crop with that padding fits them.
    """

    def __init__(self, images: Tensor, labels: Tensor, size: int, padding: int,
                 flip: bool) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or len(images) != len(labels):
            raise ValueError(f"need uint8 images (N, 3, H, W) and N labels, got {images.dtype} "
                             f"{tuple(images.shape)} and {len(labels)} labels")
        height, width = images.shape[-2:]
        if (padding and padding >= min(height, width)) or min(height, width) + 2 * padding < size:
            raise ValueError(f"cannot take a {size}x{size} crop with reflect padding {padding} "
                             f"from {height}x{width} images")
        self.labels = labels
        self.size = size
        self.padding = padding
        self.flip = flip
        self._spans = (height + 2 * padding - size + 1, width + 2 * padding - size + 1)
        self._copies: dict[torch.device, tuple[Tensor, Tensor, Tensor, Tensor]] = {}
        self._images = images

    @classmethod
    def from_dataset(cls, dataset: ImageDataset, size: int, padding: int,
                     flip: bool) -> DeviceImageCache:
        """Stack the prepared (not augmented) images of an :class:`ImageDataset`.

        Raises:
            ValueError: when the prepared images differ in size.
        """
        images = [dataset.image(index) for index in range(len(dataset))]
        shapes = {tuple(image.shape) for image in images}
        if len(shapes) > 1:
            raise ValueError(f"device_cache needs images of one size, got {sorted(shapes)[:3]}; "
                             "pass resize='resize' to resize them")
        return cls(torch.stack(images), dataset.labels, size, padding, flip)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def images(self) -> Tensor:
        """The cached ``uint8`` images ``(N, 3, H, W)`` on the CPU."""
        return self._images

    def __getitems__(self, keys: Sequence[SampleKey]) -> CachedBatch:
        """Indices and augmentation of a batch: crops and flips drawn from the keys' seeds."""
        indices, seeds = zip(*keys, strict=True)
        bits = splitmix64(np.asarray(seeds, dtype=np.uint64))
        mask = np.uint64((1 << _FIELD_BITS) - 1)
        fields = [(bits >> np.uint64(shift)) & mask for shift in (0, _FIELD_BITS)]
        top, left = ((field * np.uint64(span)) >> np.uint64(_FIELD_BITS)
                     for field, span in zip(fields, self._spans, strict=True))
        flip = (bits >> np.uint64(63)) == 1 if self.flip else np.zeros(len(bits), dtype=bool)
        return CachedBatch(torch.tensor(indices, dtype=torch.int64),
                           torch.from_numpy(top.astype(np.int64)),
                           torch.from_numpy(left.astype(np.int64)), torch.from_numpy(flip))

    def __getitem__(self, key: SampleKey) -> CachedBatch:
        return self.__getitems__([key])

    def _on(self, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Images, labels and reflect indices on ``device`` (copied there on first use)."""
        if device not in self._copies:
            height, width = self._images.shape[-2:]
            self._copies[device] = (
                self._images.to(device), self.labels.to(device),
                _reflect_index(height, self.padding).to(device),
                _reflect_index(width, self.padding).to(device),
            )
        return self._copies[device]

    def materialize(self, batch: CachedBatch) -> tuple[Tensor, Tensor]:
        """``(float32 images (B, 3, s, s) in [0, 1], int64 labels (B,))`` on the batch's device.

        The crops are gathered from the ``uint8`` images, rows then columns, mirrored where
        ``flip`` is set: the crop of the reflect-padded image, exactly as
        :class:`~lit_robust.data.transforms.RandomCropFlip` takes it.
        """
        images, labels, reflect_rows, reflect_cols = self._on(batch.indices.device)
        offsets = torch.arange(self.size, device=batch.indices.device)
        rows = reflect_rows[batch.top[:, None] + offsets]
        cols = reflect_cols[batch.left[:, None] + offsets]
        cols = torch.where(batch.flip[:, None], cols.flip(1), cols)
        chosen = images.index_select(0, batch.indices)
        count, channels, _, width = chosen.shape
        crops = chosen.gather(2, rows[:, None, :, None].expand(count, channels, self.size, width))
        crops = crops.gather(3, cols[:, None, None, :].expand(count, channels, self.size,
                                                               self.size))
        return crops.to(torch.float32).div_(255), labels[batch.indices]

    def release(self) -> None:
        """Free the copies on the devices (the CPU images stay)."""
        self._copies.clear()
