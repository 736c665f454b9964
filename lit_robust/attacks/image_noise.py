"""Random numbers that belong to an image, not to a batch.

An evaluation should attack each test image the same way whatever the batch size, the DDP
shard or the number of processes it runs in. Drawing a batch's random starts from a global
generator does not give that: image i's start depends on how many numbers were drawn before
it. :class:`ImageNoise` instead derives every number of image i from a key of that image
(:func:`image_keys`: a seed and the image's index in the dataset), the draw (random start of
restart r, its radius, ...) and the element's position, with a counter-based hash computed on
the image's device. The same key gives the same numbers on every device and in every batch.

The hash is Chris Wellons' ``lowbias32`` integer mixer on 32-bit words, evaluated in ``int64``
arithmetic that never overflows; 24 bits of each hash make a float32 uniform in (0, 1), and
two uniforms make a normal number by the Box–Muller transform.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_MASK = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9


def _mul32(x: Tensor, m: int) -> Tensor:
    """``x · m mod 2**32`` for ``0 <= x < 2**32``, with no intermediate above ``2**49``."""
    return ((x & 0xFFFF) * m + (((x >> 16) * (m & 0xFFFF)) << 16)) & _MASK


def hash32(x: Tensor) -> Tensor:
    """``lowbias32`` of 32-bit values held in an ``int64`` tensor (a bijection on 32 bits)."""
    x = x & _MASK
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def image_keys(seed: int, index: Tensor) -> Tensor:
    """The key of each image: a hash of ``seed`` and its dataset ``index`` (``int64``)."""
    index = index.to(torch.int64)
    seed_word = hash32(torch.tensor(seed & _MASK, dtype=torch.int64, device=index.device)
                       ^ hash32(torch.tensor((seed >> 32) & _MASK, device=index.device)))
    return hash32(hash32(index & _MASK) ^ hash32((index >> 32) ^ seed_word) ^ seed_word)


class ImageNoise:
    """Uniform and normal numbers for a batch whose row i depends only on ``keys[i]``, the
    ``stream`` and the order of the draws made with this object.

    Args:
        keys: one key per image (:func:`image_keys`), shape ``(N,)``, on any device.
        stream: separates independent uses of the same keys (PGD's restarts).
    """

    def __init__(self, keys: Tensor, stream: int = 0) -> None:
        self.keys = keys.to(torch.int64)
        self.stream = stream
        self._draws = 0

    def _bits(self, like: Tensor) -> Tensor:
        """24 random bits per element of ``like`` (shape ``(N, ...)``), as ``int64``."""
        draw = hash32(torch.tensor(self.stream * 1_000_003 + self._draws, dtype=torch.int64))
        self._draws += 1
        row_key = hash32(self.keys.to(like.device) ^ draw.to(like.device))
        second = hash32(row_key + _GOLDEN)
        count = like[0].numel() if like.dim() > 0 and like.shape[0] > 0 else 0
        counter = torch.arange(count, dtype=torch.int64, device=like.device)
        bits = hash32(hash32(counter[None, :] + row_key[:, None]) ^ second[:, None]) >> 8
        return bits.view(like.shape)

    def rand(self, like: Tensor) -> Tensor:
        """Uniform numbers in (0, 1), shaped and typed like ``like``."""
        return ((self._bits(like).to(torch.float32) + 0.5) / 2.0**24).to(like.dtype)

    def randn(self, like: Tensor) -> Tensor:
        """Standard normal numbers (Box–Muller), shaped and typed like ``like``."""
        u1 = (self._bits(like).to(torch.float32) + 0.5) / 2.0**24
        u2 = (self._bits(like).to(torch.float32) + 0.5) / 2.0**24
        normal = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
        return normal.to(like.dtype)
