"""Severity parameters of the 15 common corruptions, per image-size preset.

The numbers are those of Hendrycks & Dietterich's generation scripts for CIFAR-10-C
(``make_cifar_c.py``, 32×32), Tiny-ImageNet-C (``make_tinyimagenet_c.py``, 64×64) and
ImageNet-C (``imagenet_c/corruptions.py``, 224×224), severities 1 to 5. Lengths in pixels
(blur radii and sigmas, glass-blur displacement, motion-blur radius and sigma, elastic
parameters) refer to the preset's ``reference_size`` and are rescaled by
``min(H, W) / reference_size`` for other image sizes (see :mod:`lit_robust.evaluation.corruptions`).

Meaning of each entry (one tuple per severity):

========================  ==========================================================
gaussian_noise            noise standard deviation
shot_noise                photons per unit intensity (Poisson rate scale)
impulse_noise             fraction of values replaced by salt or pepper
defocus_blur              (disk radius, anti-alias Gaussian sigma)
glass_blur                (Gaussian sigma, max displacement, iterations)
motion_blur               (kernel radius, kernel sigma)
zoom_blur                 (end, step) of ``numpy.arange(1, end, step)`` zoom factors
snow                      (mean, std, zoom, threshold, blur radius, blur sigma, blend)
frost                     (image weight, frost-texture weight)
fog                       (fog weight, plasma-fractal wibble decay)
brightness                value added to the HSV value channel
contrast                  contrast factor around the per-channel mean
elastic_transform         (displacement magnitude, displacement smoothing sigma, affine
                          jitter), all in pixels at the reference size
pixelate                  relative size of the down-sampled image
jpeg_compression          JPEG quality
========================  ==========================================================
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CorruptionPreset:
    """Parameters of all corruptions for images of about ``reference_size`` pixels."""

    reference_size: int
    params: dict[str, tuple[tuple[float, ...], ...]]


def _table(**params: list) -> dict[str, tuple[tuple[float, ...], ...]]:
    return {
        name: tuple(tuple(v) if isinstance(v, tuple) else (v,) for v in values)
        for name, values in params.items()
    }


CIFAR = CorruptionPreset(32, _table(
    gaussian_noise=[0.04, 0.06, 0.08, 0.09, 0.10],
    shot_noise=[500, 250, 100, 75, 50],
    impulse_noise=[0.01, 0.02, 0.03, 0.05, 0.07],
    defocus_blur=[(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],
    glass_blur=[(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],
    motion_blur=[(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],
    zoom_blur=[(1.06, 0.01), (1.11, 0.01), (1.16, 0.01), (1.21, 0.01), (1.26, 0.01)],
    snow=[(0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
          (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
          (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)],
    frost=[(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)],
    fog=[(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],
    brightness=[0.05, 0.1, 0.15, 0.2, 0.3],
    contrast=[0.75, 0.5, 0.4, 0.3, 0.15],
    elastic_transform=[(32 * 0.0, 32 * 0.0, 32 * 0.08), (32 * 0.05, 32 * 0.2, 32 * 0.07),
                       (32 * 0.08, 32 * 0.06, 32 * 0.06), (32 * 0.1, 32 * 0.04, 32 * 0.05),
                       (32 * 0.1, 32 * 0.03, 32 * 0.03)],
    pixelate=[0.95, 0.9, 0.85, 0.75, 0.65],
    jpeg_compression=[80, 65, 58, 50, 40],
))

TINY_IMAGENET = CorruptionPreset(64, _table(
    gaussian_noise=[0.04, 0.08, 0.12, 0.15, 0.18],
    shot_noise=[250, 100, 50, 30, 15],
    impulse_noise=[0.01, 0.02, 0.05, 0.08, 0.14],
    defocus_blur=[(0.5, 0.6), (1, 0.1), (1.5, 0.1), (2.5, 0.01), (3, 0.1)],
    glass_blur=[(0.1, 1, 1), (0.5, 1, 1), (0.6, 1, 2), (0.7, 2, 1), (0.9, 2, 2)],
    motion_blur=[(10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3)],
    zoom_blur=[(1.06, 0.01), (1.11, 0.01), (1.16, 0.01), (1.21, 0.01), (1.26, 0.01)],
    snow=[(0.1, 0.2, 1, 0.6, 8, 3, 0.8), (0.1, 0.2, 1, 0.5, 10, 4, 0.8),
          (0.15, 0.3, 1.75, 0.55, 10, 4, 0.7), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.65),
          (0.3, 0.3, 1.25, 0.65, 14, 12, 0.6)],
    frost=[(1, 0.3), (0.9, 0.4), (0.8, 0.45), (0.75, 0.5), (0.7, 0.55)],
    fog=[(0.4, 3), (0.7, 3), (1, 2.5), (1.5, 2), (2, 1.75)],
    brightness=[0.1, 0.2, 0.3, 0.4, 0.5],
    contrast=[0.4, 0.3, 0.2, 0.1, 0.05],
    elastic_transform=[(64 * 0.0, 64 * 0.0, 64 * 0.08), (64 * 0.05, 64 * 0.3, 64 * 0.06),
                       (64 * 0.1, 64 * 0.08, 64 * 0.06), (64 * 0.1, 64 * 0.03, 64 * 0.03),
                       (64 * 0.16, 64 * 0.03, 64 * 0.02)],
    pixelate=[0.9, 0.8, 0.7, 0.6, 0.5],
    jpeg_compression=[65, 58, 50, 40, 25],
))

# The reference script scales the elastic parameters by 244 where 224 was meant; its values
# are kept as they are.
IMAGENET = CorruptionPreset(224, _table(
    gaussian_noise=[0.08, 0.12, 0.18, 0.26, 0.38],
    shot_noise=[60, 25, 12, 5, 3],
    impulse_noise=[0.03, 0.06, 0.09, 0.17, 0.27],
    defocus_blur=[(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)],
    glass_blur=[(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)],
    motion_blur=[(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)],
    zoom_blur=[(1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03)],
    snow=[(0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
          (0.55, 0.3, 4, 0.9, 12, 8, 0.7), (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
          (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)],
    frost=[(1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)],
    fog=[(1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)],
    brightness=[0.1, 0.2, 0.3, 0.4, 0.5],
    contrast=[0.4, 0.3, 0.2, 0.1, 0.05],
    elastic_transform=[(244 * 2, 244 * 0.7, 244 * 0.1), (244 * 2, 244 * 0.08, 244 * 0.2),
                       (244 * 0.05, 244 * 0.01, 244 * 0.02), (244 * 0.07, 244 * 0.01, 244 * 0.02),
                       (244 * 0.12, 244 * 0.01, 244 * 0.02)],
    pixelate=[0.6, 0.5, 0.4, 0.3, 0.25],
    jpeg_compression=[25, 18, 15, 10, 7],
))

PRESETS: dict[str, CorruptionPreset] = {
    "cifar": CIFAR, "tinyimagenet": TINY_IMAGENET, "imagenet": IMAGENET,
}


def preset_for_size(height: int, width: int) -> str:
    """The preset whose reference size is closest: ≤ 48 px → cifar, ≤ 144 px → tinyimagenet,
    larger → imagenet (by the shorter side)."""
    side = min(height, width)
    if side <= 48:
        return "cifar"
    if side <= 144:
        return "tinyimagenet"
    return "imagenet"
