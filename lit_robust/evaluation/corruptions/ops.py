"""Image operations behind the common corruptions, each matching a reference library call.

Filters with OpenCV (reflect-101), SciPy (reflect = half-sample symmetric) and scikit-image
(nearest) borders, ImageMagick's motion blur, SciPy's order-1 ``zoom``, the diamond-square
plasma fractal of Hendrycks & Dietterich's scripts and PIL's ``BOX`` resampling, on batches of
(B, C, H, W) tensors.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


class RandomSource:
    """Random numbers drawn on ``generator``'s device (or ``device``), returned on ``device``."""

    def __init__(self, generator: torch.Generator | None, device: torch.device) -> None:
        self.generator = generator
        self.source = generator.device if generator is not None else device
        self.target = device

    def uniform(self, shape: tuple[int, ...], low: float = 0.0, high: float = 1.0) -> Tensor:
        u = torch.rand(shape, generator=self.generator, device=self.source, dtype=torch.float64)
        return (low + (high - low) * u).to(self.target)

    def normal(self, shape: tuple[int, ...], mean: float = 0.0, std: float = 1.0) -> Tensor:
        z = torch.randn(shape, generator=self.generator, device=self.source, dtype=torch.float64)
        return (mean + std * z).to(self.target)

    def poisson(self, rates: Tensor) -> Tensor:
        return torch.poisson(rates.to(self.source), generator=self.generator).to(self.target)

    def integers(self, low: int, high: int, shape: tuple[int, ...]) -> Tensor:
        return torch.randint(low, high, shape, generator=self.generator, device=self.source)


def pad_index(size: int, before: int, after: int, mode: str, device: torch.device) -> Tensor:
    """Source index of every padded position: ``edge`` (repeat), ``reflect101`` (OpenCV
    default, ``dcb|abcd``) or ``symmetric`` (SciPy ``reflect``, ``cba|abcd``); any width."""
    index = torch.arange(-before, size + after, device=device)
    if mode == "edge" or size == 1:
        return index.clamp(0, size - 1)
    if mode == "reflect101":
        period, mirror = 2 * size - 2, 2 * size - 2
    else:
        period, mirror = 2 * size, 2 * size - 1
    index = index.remainder(period)
    return torch.where(index >= size, mirror - index, index)


def correlate(x: Tensor, kernel: Tensor, mode: str) -> Tensor:
    """Per-channel 2-D correlation with a centred kernel (OpenCV ``filter2D`` semantics)."""
    kh, kw = kernel.shape
    height, width = x.shape[-2:]
    x = x.index_select(2, pad_index(height, kh // 2, kh // 2, mode, x.device))
    x = x.index_select(3, pad_index(width, kw // 2, kw // 2, mode, x.device))
    weight = kernel.to(x).expand(x.shape[1], 1, kh, kw)
    return F.conv2d(x, weight, groups=x.shape[1])


def gaussian_kernel(sigma: float, radius: int) -> Tensor:
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    return kernel / kernel.sum()


def gaussian_blur(x: Tensor, sigma: float, truncate: float, mode: str) -> Tensor:
    """Separable Gaussian blur with SciPy's kernel radius ``int(truncate·σ + 0.5)``."""
    if sigma <= 0:
        return x
    kernel = gaussian_kernel(sigma, int(truncate * sigma + 0.5))
    return correlate(correlate(x, kernel.view(1, -1), mode), kernel.view(-1, 1), mode)


def disk_kernel(radius: float, alias_blur: float) -> Tensor:
    """The reference's anti-aliased disk: a binary disk on a 17×17 grid (or (2⌈r⌉+1)² for
    r > 8), normalized, then blurred by an OpenCV Gaussian of size 3 (5 for r > 8)."""
    half, size = (8, 3) if radius <= 8 else (math.ceil(radius), 5)
    t = torch.arange(-half, half + 1, dtype=torch.float64)
    disk = ((t.view(-1, 1) ** 2 + t.view(1, -1) ** 2) <= radius**2).double()
    disk = (disk / disk.sum()).view(1, 1, 2 * half + 1, 2 * half + 1)
    kernel = gaussian_kernel(alias_blur, size // 2)
    disk = correlate(correlate(disk, kernel.view(1, -1), "reflect101"), kernel.view(-1, 1),
                      "reflect101")
    return disk[0, 0]


def line_blur(x: Tensor, radius: float, sigma: float, angles: Tensor) -> Tensor:
    """ImageMagick ``MotionBlurImage``: out(p) = Σᵢ kᵢ·x(p + round(i·(cos θ, sin θ))) with
    kᵢ ∝ exp(−i²/2σ²), i < 2⌈radius⌉ + 1, edges repeated; one angle θ (degrees) per image."""
    batch, channels, height, width = x.shape
    taps = torch.arange(2 * math.ceil(radius) + 1, dtype=torch.float64, device=x.device)
    weights = torch.exp(-(taps**2) / (2 * sigma**2))
    weights = (weights / weights.sum()).tolist()
    theta = torch.deg2rad(angles.double()).view(-1, 1)
    dx = torch.ceil(taps * torch.cos(theta) - 0.5).long()
    dy = torch.ceil(taps * torch.sin(theta) - 0.5).long()
    rows = torch.arange(height, device=x.device).view(1, -1, 1)
    cols = torch.arange(width, device=x.device).view(1, 1, -1)
    flat = x.flatten(2)
    out = torch.zeros_like(flat)
    for i, weight in enumerate(weights):
        r = (rows + dy[:, i].view(-1, 1, 1)).clamp(0, height - 1)
        c = (cols + dx[:, i].view(-1, 1, 1)).clamp(0, width - 1)
        index = (r * width + c).view(batch, 1, -1).expand(-1, channels, -1)
        out += weight * flat.gather(2, index)
    return out.view_as(x)


def clipped_zoom(x: Tensor, factor: float) -> Tensor:
    """Crop the centre, zoom by ``factor`` (SciPy ``zoom`` order 1 = bilinear with aligned
    corners, output size ``round(crop·factor)``) and trim back to the input size."""
    size = x.shape[-2:]
    crops, zoomed, trims = [], [], []
    for n in size:
        crop = math.ceil(n / factor)
        crops.append(((n - crop) // 2, crop))
        zoomed.append(round(crop * factor))
        trims.append((zoomed[-1] - n) // 2)
    (top, ch), (left, cw) = crops
    out = F.interpolate(x[..., top:top + ch, left:left + cw], size=tuple(zoomed),
                        mode="bilinear", align_corners=True)
    return out[..., trims[0]:trims[0] + size[0], trims[1]:trims[1] + size[1]]


def plasma_fractal(batch: int, height: int, width: int, decay: float, rng: RandomSource) -> Tensor:
    """Diamond-square height maps (the reference's ``plasma_fractal``) on a square of the next
    power of two ≥ max(H, W), cropped to (B, 1, H, W) and scaled to [0, 1]."""
    size = 1 << max(1, math.ceil(math.log2(max(height, width))))
    maps = torch.zeros(batch, size, size, dtype=torch.float64, device=rng.target)
    step, wibble = size, 100.0
    while step >= 2:
        half = step // 2
        corners = maps[:, 0::step, 0::step]
        squares = corners + corners.roll(-1, dims=1)
        squares = squares + squares.roll(-1, dims=2)
        maps[:, half::step, half::step] = squares / 4 + wibble * rng.uniform(
            squares.shape, -wibble, wibble)
        centres, corners = maps[:, half::step, half::step], maps[:, 0::step, 0::step]
        sums = centres + centres.roll(1, dims=1) + corners + corners.roll(-1, dims=2)
        maps[:, 0::step, half::step] = sums / 4 + wibble * rng.uniform(sums.shape, -wibble,
                                                                         wibble)
        sums = centres + centres.roll(1, dims=2) + corners + corners.roll(-1, dims=1)
        maps[:, half::step, 0::step] = sums / 4 + wibble * rng.uniform(sums.shape, -wibble,
                                                                         wibble)
        step, wibble = half, wibble / decay
    maps = maps - maps.amin(dim=(1, 2), keepdim=True)
    maps = maps / maps.amax(dim=(1, 2), keepdim=True)
    return maps[:, None, :height, :width]


def sample_bilinear(x: Tensor, cols: Tensor, rows: Tensor, align_corners: bool) -> Tensor:
    """Bilinear sampling at pixel coordinates with reflection: about the border pixel centres
    (OpenCV reflect-101) when ``align_corners``, else about the image edges (SciPy reflect)."""
    height, width = x.shape[-2:]
    if align_corners:
        gx, gy = 2 * cols / max(width - 1, 1) - 1, 2 * rows / max(height - 1, 1) - 1
    else:
        gx, gy = (2 * cols + 1) / width - 1, (2 * rows + 1) / height - 1
    grid = torch.stack([gx, gy], dim=-1).expand(x.shape[0], -1, -1, -1).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection",
                         align_corners=align_corners)


def box_resize_matrix(in_size: int, out_size: int) -> Tensor:
    """PIL's ``BOX`` resampling weights as an (out, in) matrix (``precompute_coeffs``)."""
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = 0.5 * filter_scale
    matrix = torch.zeros(out_size, in_size, dtype=torch.float64)
    for out in range(out_size):
        centre = (out + 0.5) * scale
        low = max(int(centre - support + 0.5), 0)
        high = min(int(centre + support + 0.5), in_size)
        for i in range(low, high):
            position = (i - centre + 0.5) / filter_scale
            matrix[out, i] = 1.0 if -0.5 < position <= 0.5 else 0.0
        matrix[out] /= matrix[out].sum()
    return matrix


def greyscale(x: Tensor) -> Tensor:
    """OpenCV ``RGB2GRAY`` (0.299 R + 0.587 G + 0.114 B); the image itself if single-channel."""
    if x.shape[1] != 3:
        return x.mean(dim=1, keepdim=True)
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device)
    return (x * weights.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
