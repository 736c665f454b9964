"""A training order that a killed run can resume at any batch, bit for bit.

:class:`ResumableRandomSampler` replaces ``shuffle=True``: epoch ``e``'s order is a
permutation drawn from a generator seeded with ``(seed, e)`` alone, and every drawn index comes
with a per-sample seed (:class:`SampleKey`) from which the dataset draws that image's
augmentation. Neither the order nor the augmentation touches the global random number
generators, so they do not depend on how far the loader has prefetched or on how many worker
processes decode the images, and a run resumed in the middle of epoch ``e`` sees exactly the
batches that an uninterrupted run sees from there on (:meth:`ResumableRandomSampler.start_at`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import torch
from torch.utils.data import Sampler

_EPOCH_STRIDE = 1_000_003


class SampleKey(NamedTuple):
    """A dataset index with the seed of that sample's random augmentation."""

    index: int
    seed: int


class ResumableRandomSampler(Sampler[SampleKey]):
    """Shuffled :class:`SampleKey` s whose order and augmentation seeds depend on
    ``(seed, epoch)`` only.

    Lightning calls :meth:`set_epoch` before every training epoch.

    Args:
        num_samples: size of the dataset.
        seed: seed of every epoch's permutation and augmentation seeds.
    """

    def __init__(self, num_samples: int, seed: int) -> None:
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.num_samples = num_samples
        self.seed = int(seed)
        self.epoch = 0
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s order from the next iteration on."""
        self.epoch = int(epoch)

    def start_at(self, epoch: int, position: int) -> None:
        """Make the next iteration yield epoch ``epoch``'s order from ``position`` on (the
        following iterations start at 0).

        Raises:
            ValueError: when ``position`` is outside ``0 .. num_samples``.
        """
        if not 0 <= position <= self.num_samples:
            raise ValueError(f"position {position} is outside 0..{self.num_samples}")
        self.epoch = int(epoch)
        self._skip = int(position)

    def __len__(self) -> int:
        # The full epoch: Lightning counts a resumed epoch's batches from where it stopped.
        return self.num_samples

    def __iter__(self) -> Iterator[SampleKey]:
        generator = torch.Generator().manual_seed(self.seed * _EPOCH_STRIDE + self.epoch)
        order = torch.randperm(self.num_samples, generator=generator)
        seeds = torch.randint(0, 2**62, (self.num_samples,), generator=generator)
        skip, self._skip = self._skip, 0
        for index, sample_seed in zip(order[skip:].tolist(), seeds[skip:].tolist(),
                                      strict=True):
            yield SampleKey(index, sample_seed)

    def state_dict(self) -> dict[str, Any]:
        """The seed and the epoch."""
        return {"seed": self.seed, "epoch": self.epoch}
