"""SimCLR's data augmentations on batches of [0, 1] images, on whatever device they are.

Every image of a batch draws its own parameters; nothing leaves the device. Each operation
matches torchvision's functional counterpart for the same parameters (tested):
random resized crop and horizontal flip as one affine resampling (bilinear), colour jitter
(``adjust_brightness``, ``adjust_contrast``, ``adjust_saturation``, ``adjust_hue``, each
clamped to [0, 1]), grayscale (torchvision's luma weights) and Gaussian blur. Two
differences from ``torchvision.transforms``: the four jitters run in a fixed order instead
of a random permutation, and a crop whose side would exceed the image is clamped to the
image instead of being re-drawn.

Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations",
ICML 2020 (appendix A: crop scale (0.08, 1), aspect ratio (3/4, 4/3), jitter strength s with
brightness, contrast and saturation 0.8·s and hue 0.2·s applied with probability 0.8,
grayscale with probability 0.2, blur with probability 0.5 and σ in (0.1, 2) on ImageNet).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


def _uniform(low: float, high: float, n: int, like: Tensor,
             generator: torch.Generator | None) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, device=like.device,
                                           dtype=like.dtype)


def _per_image(values: Tensor) -> Tensor:
    return values.view(-1, 1, 1, 1)


def grayscale(x: Tensor) -> Tensor:
    """Luma ``0.2989 R + 0.587 G + 0.114 B`` of (N, 3, H, W) images, shape (N, 1, H, W)."""
    weights = torch.tensor(_GRAY_WEIGHTS, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    """``clamp(factor·x)`` with one factor per image."""
    return (x * _per_image(factor)).clamp(0, 1)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Blend every image with the mean of its grayscale version, one factor per image."""
    mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    return (_per_image(factor) * x + (1 - _per_image(factor)) * mean).clamp(0, 1)


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    """Blend every image with its grayscale version, one factor per image."""
    return (_per_image(factor) * x + (1 - _per_image(factor)) * grayscale(x)).clamp(0, 1)


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate the hue by ``shift`` (a fraction of a turn in [-0.5, 0.5]) per image, in HSV."""
    value, argmax = x.max(dim=1)
    minimum = x.min(dim=1).values
    chroma = value - minimum
    safe_value = torch.where(value == 0, torch.ones_like(value), value)
    saturation = chroma / safe_value
    safe_chroma = torch.where(chroma == 0, torch.ones_like(chroma), chroma)
    red, green, blue = x.unbind(dim=1)
    rc, gc, bc = ((value - channel) / safe_chroma for channel in (red, green, blue))
    hue = torch.where(argmax == 0, bc - gc, torch.where(argmax == 1, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(chroma == 0, torch.zeros_like(hue), hue)
    hue = torch.remainder(hue / 6.0 + shift.view(-1, 1, 1), 1.0)
    return _hsv_to_rgb(hue, saturation, value)


def _hsv_to_rgb(hue: Tensor, saturation: Tensor, value: Tensor) -> Tensor:
    sector = torch.floor(hue * 6.0)
    fraction = hue * 6.0 - sector
    sector = sector.long() % 6
    p = (value * (1 - saturation)).clamp(0, 1)
    q = (value * (1 - saturation * fraction)).clamp(0, 1)
    t = (value * (1 - saturation * (1 - fraction))).clamp(0, 1)
    table = torch.stack([
        torch.stack([value, q, p, p, t, value]),
        torch.stack([t, value, value, q, p, p]),
        torch.stack([p, p, t, value, value, q]),
    ])  # (3 channels, 6 sectors, N, H, W)
    index = sector.unsqueeze(0).unsqueeze(0).expand(3, 1, *sector.shape)
    return table.gather(1, index).squeeze(1).transpose(0, 1)


def gaussian_blur(x: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Separable Gaussian blur with one σ per image and reflect padding (odd kernel size)."""
    if kernel_size < 3 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd and >= 3, got {kernel_size}")
    n, c, h, w = x.shape
    radius = kernel_size // 2
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (offsets.view(1, -1) / sigma.view(-1, 1)) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)
    flat = x.reshape(1, n * c, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"),
                    kernel.view(n * c, 1, 1, kernel_size), groups=n * c)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"),
                    kernel.view(n * c, 1, kernel_size, 1), groups=n * c)
    return flat.view(n, c, h, w)


def resized_crop_and_flip(
    x: Tensor, width: Tensor, height: Tensor, center_x: Tensor, center_y: Tensor, flip: Tensor
) -> Tensor:
    """Resample a crop of every image to the full size, mirrored where ``flip`` is true.

    Args:
        x: images (N, C, H, W).
        width: crop widths as fractions of the image width, in (0, 1].
        height: crop heights as fractions of the image height, in (0, 1].
        center_x: crop centres in normalized coordinates [-1, 1] (left to right).
        center_y: crop centres in normalized coordinates [-1, 1] (top to bottom).
        flip: boolean, mirror the crop horizontally.
    """
    sign = 1.0 - 2.0 * flip.to(x.dtype)
    zeros = torch.zeros_like(width)
    theta = torch.stack([
        torch.stack([width * sign, zeros, center_x], dim=1),
        torch.stack([zeros, height, center_y], dim=1),
    ], dim=1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class SimCLRAugmentation:
    """Draws random SimCLR views of a batch of [0, 1] images on the batch's device.

    Args:
        crop_scale: range of the crop's area as a fraction of the image.
        crop_ratio: range of the crop's aspect ratio (width / height), sampled log-uniformly.
        flip_probability: probability of a horizontal flip.
        jitter_strength: s; brightness, contrast and saturation factors are drawn from
            [1 − 0.8·s, 1 + 0.8·s] and the hue shift from [−0.2·s, 0.2·s] (s = 0.5 for
            CIFAR-size images, 1.0 for ImageNet in the paper).
        jitter_probability: probability of the colour jitter.
        grayscale_probability: probability of converting to grayscale.
        blur_probability: probability of a Gaussian blur (0 for CIFAR-size images, 0.5 for
            ImageNet in the paper).
        blur_sigma: range of the blur's σ in pixels.

    Raises:
        ValueError: for ranges or probabilities outside their domains.
    """

    def __init__(
        self,
        crop_scale: Sequence[float] = (0.08, 1.0),
        crop_ratio: Sequence[float] = (3 / 4, 4 / 3),
        flip_probability: float = 0.5,
        jitter_strength: float = 0.5,
        jitter_probability: float = 0.8,
        grayscale_probability: float = 0.2,
        blur_probability: float = 0.0,
        blur_sigma: Sequence[float] = (0.1, 2.0),
    ) -> None:
        for name, (low, high) in {"crop_scale": crop_scale, "crop_ratio": crop_ratio,
                                  "blur_sigma": blur_sigma}.items():
            if not 0 < low <= high:
                raise ValueError(f"{name} must be a range 0 < low <= high, got {list((low, high))}")
        if crop_scale[1] > 1:
            raise ValueError(f"crop_scale is a fraction of the image area (<= 1), got {crop_scale}")
        for name, p in {"flip_probability": flip_probability,
                        "jitter_probability": jitter_probability,
                        "grayscale_probability": grayscale_probability,
                        "blur_probability": blur_probability}.items():
            if not 0 <= p <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        if not 0 <= jitter_strength <= 1.25:
            raise ValueError(f"jitter_strength must be in [0, 1.25], got {jitter_strength}")
        self.crop_scale = tuple(float(v) for v in crop_scale)
        self.crop_ratio = tuple(float(v) for v in crop_ratio)
        self.flip_probability = flip_probability
        self.jitter_strength = jitter_strength
        self.jitter_probability = jitter_probability
        self.grayscale_probability = grayscale_probability
        self.blur_probability = blur_probability
        self.blur_sigma = tuple(float(v) for v in blur_sigma)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One random view of every image of ``x`` (N, 3, H, W) in [0, 1]."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected RGB images of shape (N, 3, H, W), got {tuple(x.shape)}")
        n = x.shape[0]

        def draw(low: float, high: float) -> Tensor:
            return _uniform(low, high, n, x, generator)

        def happens(p: float) -> Tensor:
            return draw(0.0, 1.0) < p

        area = draw(*self.crop_scale)
        ratio = torch.exp(draw(math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1])))
        width = torch.sqrt(area * ratio).clamp(max=1.0)
        height = torch.sqrt(area / ratio).clamp(max=1.0)
        center_x = (1 - width) * draw(-1.0, 1.0)
        center_y = (1 - height) * draw(-1.0, 1.0)
        out = resized_crop_and_flip(x, width, height, center_x, center_y,
                                    happens(self.flip_probability))
        s = self.jitter_strength
        jittered = adjust_brightness(out, draw(1 - 0.8 * s, 1 + 0.8 * s))
        jittered = adjust_contrast(jittered, draw(1 - 0.8 * s, 1 + 0.8 * s))
        jittered = adjust_saturation(jittered, draw(1 - 0.8 * s, 1 + 0.8 * s))
        jittered = adjust_hue(jittered, draw(-0.2 * s, 0.2 * s))
        out = torch.where(_per_image(happens(self.jitter_probability)), jittered, out)
        out = torch.where(_per_image(happens(self.grayscale_probability)),
                          grayscale(out).expand_as(out), out)
        if self.blur_probability > 0:
            kernel_size = max(3, 2 * (x.shape[-1] // 20) + 1)  # about 10% of the image side
            blurred = gaussian_blur(out, draw(*self.blur_sigma), kernel_size)
            out = torch.where(_per_image(happens(self.blur_probability)), blurred, out)
        return out
