"""SimCLR's augmentations on hand-built cases: every random parameter of a view against the
paper's ranges (appendix A of Chen et al.), each operation alone, and the one-line errors."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.functional as TF

from lit_robust.methods.simclr import SimCLRAugmentation
from lit_robust.methods.simclr import augment as A


def images(n: int = 4, height: int = 16, width: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, height, width, generator=torch.Generator().manual_seed(seed))


def reference_view(x: torch.Tensor, seed: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                   flip=0.5, s=0.5, jitter=0.8, gray=0.2, blur=0.0,
                   blur_sigma=(0.1, 2.0)) -> torch.Tensor:
    """One view written out from the documented recipe, with the draws in their order: crop
    area, log-ratio, centres, flip; brightness, contrast, saturation, hue and whether to
    jitter; grayscale; blur σ and whether to blur (kernel about 10 % of the side, odd, >= 3)."""
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]

    def u(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=g)

    area = u(*scale)
    r = torch.exp(u(math.log(ratio[0]), math.log(ratio[1])))
    w, h = (area * r).sqrt().clamp(max=1.0), (area / r).sqrt().clamp(max=1.0)
    cx, cy = (1 - w) * u(-1.0, 1.0), (1 - h) * u(-1.0, 1.0)
    out = A.resized_crop_and_flip(x, w, h, cx, cy, u(0.0, 1.0) < flip)
    b, c, sat, hue = (u(1 - 0.8 * s, 1 + 0.8 * s), u(1 - 0.8 * s, 1 + 0.8 * s),
                      u(1 - 0.8 * s, 1 + 0.8 * s), u(-0.2 * s, 0.2 * s))
    jittered = torch.stack([
        TF.adjust_hue(TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(
            out[i], b[i].item()), c[i].item()), sat[i].item()), hue[i].item())
        for i in range(n)])
    out = torch.where((u(0.0, 1.0) < jitter).view(-1, 1, 1, 1), jittered, out)
    out = torch.where((u(0.0, 1.0) < gray).view(-1, 1, 1, 1),
                      TF.rgb_to_grayscale(out).expand_as(out), out)
    if blur > 0:
        size = max(3, 2 * (x.shape[-1] // 20) + 1)
        sigma = u(*blur_sigma)
        blurred = torch.stack([TF.gaussian_blur(out[i], [size, size], [sigma[i].item()] * 2)
                               for i in range(n)])
        out = torch.where((u(0.0, 1.0) < blur).view(-1, 1, 1, 1), blurred, out)
    return out


@pytest.mark.parametrize("settings", [
    {},
    {"s": 1.0, "jitter": 1.0, "gray": 0.5, "flip": 0.3},
    {"scale": (0.2, 0.6), "ratio": (0.5, 2.0), "jitter": 0.5, "gray": 0.0},
    {"blur": 0.5, "blur_sigma": (0.5, 1.5)},
])
def test_a_view_follows_the_recipe_draw_by_draw(settings: dict) -> None:
    names = {"scale": "crop_scale", "ratio": "crop_ratio", "flip": "flip_probability",
             "s": "jitter_strength", "jitter": "jitter_probability",
             "gray": "grayscale_probability", "blur": "blur_probability",
             "blur_sigma": "blur_sigma"}
    augmentation = SimCLRAugmentation(**{names[k]: v for k, v in settings.items()})
    x = images(8, 16, 48)  # 48 wide: a blur kernel of 5
    got = augmentation(x, torch.Generator().manual_seed(3))
    torch.testing.assert_close(got, reference_view(x, 3, **settings), atol=5e-6, rtol=0)


def test_blur_kernel_is_about_a_tenth_of_the_side() -> None:
    """σ fixed at 1 and every image blurred: kernel 3 below 30 pixels, 7 at 64."""
    for side, size in ((16, 3), (64, 7)):
        augmentation = SimCLRAugmentation(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0),
                                          flip_probability=0.0, jitter_probability=0.0,
                                          grayscale_probability=0.0, blur_probability=1.0,
                                          blur_sigma=(1.0, 1.0))
        x = images(2, side, side)
        expected = torch.stack([TF.gaussian_blur(x[i], [size, size], [1.0, 1.0])
                                for i in range(2)])
        torch.testing.assert_close(augmentation(x), expected)


def test_each_operation_alone() -> None:
    x = images(3)
    still = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_probability=0.0,
                 jitter_probability=0.0, grayscale_probability=0.0)
    torch.testing.assert_close(SimCLRAugmentation(**still)(x), x)
    torch.testing.assert_close(SimCLRAugmentation(**{**still, "flip_probability": 1.0})(x),
                               x.flip(-1))
    torch.testing.assert_close(SimCLRAugmentation(**{**still, "grayscale_probability": 1.0})(x),
                               TF.rgb_to_grayscale(x).expand_as(x))
    no_jitter = SimCLRAugmentation(**{**still, "jitter_probability": 1.0, "jitter_strength": 0.0})
    torch.testing.assert_close(no_jitter(x), x, atol=2e-6, rtol=0)
    quarter = SimCLRAugmentation(**{**still, "crop_scale": (0.25, 0.25)})
    view = quarter(x, torch.Generator().manual_seed(0))
    assert not torch.allclose(view, x)  # half the side each way, upsampled


def test_bad_views_and_settings_are_one_line_errors() -> None:
    augmentation = SimCLRAugmentation()
    with pytest.raises(ValueError, match=r"^expected RGB images of shape \(N, 3, H, W\), got "
                                         r"\(3, 8, 8\)$"):
        augmentation(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match=r"got \(2, 1, 8, 8\)$"):
        augmentation(torch.rand(2, 1, 8, 8))
    cases = [
        ({"crop_scale": (0.0, 1.0)},
         r"^crop_scale must be a range 0 < low <= high, got \[0.0, 1.0\]$"),
        ({"crop_ratio": (2.0, 1.0)},
         r"^crop_ratio must be a range 0 < low <= high, got \[2.0, 1.0\]$"),
        ({"blur_sigma": (-1.0, 1.0)}, r"^blur_sigma must be a range"),
        ({"crop_scale": (0.5, 1.5)}, r"^crop_scale is a fraction of the image area \(<= 1\), got "
                                     r"\(0.5, 1.5\)$"),
        ({"flip_probability": -0.1}, r"^flip_probability must be in \[0, 1\], got -0.1$"),
        ({"grayscale_probability": 1.1}, r"^grayscale_probability must be in \[0, 1\], got 1.1$"),
        ({"blur_probability": 2.0}, r"^blur_probability must be in \[0, 1\], got 2.0$"),
        ({"jitter_probability": 1.5}, r"^jitter_probability must be in \[0, 1\], got 1.5$"),
        ({"jitter_strength": -0.1}, r"^jitter_strength must be in \[0, 1.25\], got -0.1$"),
        ({"jitter_strength": 1.3}, r"^jitter_strength must be in \[0, 1.25\], got 1.3$"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            SimCLRAugmentation(**bad)
    # the ends of every range are accepted
    SimCLRAugmentation(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), blur_sigma=(2.0, 2.0),
                       flip_probability=0.0, jitter_probability=1.0, grayscale_probability=0.0,
                       blur_probability=1.0, jitter_strength=1.25)
    SimCLRAugmentation(jitter_strength=0.0, flip_probability=1.0)


def test_settings_are_kept_as_floats() -> None:
    augmentation = SimCLRAugmentation(crop_scale=[0.5, 1], crop_ratio=[1, 2], blur_sigma=[1, 2])
    assert augmentation.crop_scale == (0.5, 1.0) and augmentation.crop_ratio == (1.0, 2.0)
    assert augmentation.blur_sigma == (1.0, 2.0)
    assert all(type(v) is float for v in (*augmentation.crop_scale, *augmentation.blur_sigma))


def test_blur_on_a_non_square_image_and_its_kernel_check() -> None:
    x = images(2, 10, 18)
    sigma = [0.7, 1.6]
    expected = torch.stack([TF.gaussian_blur(x[i], [5, 5], [s, s]) for i, s in enumerate(sigma)])
    torch.testing.assert_close(A.gaussian_blur(x, torch.tensor(sigma), 5), expected)
    for size in (1, 4):
        with pytest.raises(ValueError, match=rf"^kernel_size must be odd and >= 3, got {size}$"):
            A.gaussian_blur(x, torch.tensor(sigma), size)
    A.gaussian_blur(x, torch.tensor(sigma), 3)


def test_crop_of_the_left_half_at_full_height() -> None:
    x = images(1, 16, 16)
    full, half = torch.ones(1), torch.full((1,), 0.5)
    zero = torch.zeros(1)
    left = A.resized_crop_and_flip(x, half, full, -half, zero, torch.zeros(1, dtype=torch.bool))
    upsampled = torch.nn.functional.interpolate(x[..., :, :8], size=(16, 16), mode="bilinear",
                                                align_corners=False)
    torch.testing.assert_close(left[..., :15], upsampled[..., :15])
    bottom = A.resized_crop_and_flip(x, full, half, zero, half, torch.zeros(1, dtype=torch.bool))
    upsampled = torch.nn.functional.interpolate(x[..., 8:, :], size=(16, 16), mode="bilinear",
                                                align_corners=False)
    torch.testing.assert_close(bottom[..., 1:, :], upsampled[..., 1:, :])


def test_hue_of_gray_black_and_pure_colours() -> None:
    """Gray and black pixels have no hue to rotate; pure colours land on every sector."""
    gray = torch.tensor([0.0, 0.3, 1.0]).view(3, 1, 1, 1).expand(3, 3, 2, 2).contiguous()
    torch.testing.assert_close(A.adjust_hue(gray, torch.tensor([0.25, -0.4, 0.1])), gray)
    colours = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 0], [0, 1.0, 1.0],
                            [1.0, 0, 1.0], [0.9, 0.5, 0.1], [0.2, 0.4, 0.9]])
    x = colours.view(-1, 3, 1, 1).expand(-1, 3, 2, 3).contiguous()
    for shift in (-0.45, -0.2, 0.1, 1 / 6, 0.3, 0.5):
        factors = torch.full((len(x),), shift)
        expected = torch.stack([TF.adjust_hue(image, shift) for image in x])
        torch.testing.assert_close(A.adjust_hue(x, factors), expected, atol=2e-6, rtol=0)


def test_jitter_clamps_to_the_pixel_range() -> None:
    x = torch.tensor([0.1, 0.6, 0.9]).view(1, 3, 1, 1).expand(2, 3, 2, 2).contiguous()
    factors = torch.tensor([3.0, 0.0])
    bright = A.adjust_brightness(x, factors)
    assert bright.max() == 1.0 and bright[1].abs().max() == 0
    for ours, theirs in ((A.adjust_contrast, TF.adjust_contrast),
                         (A.adjust_saturation, TF.adjust_saturation)):
        expected = torch.stack([theirs(x[i], f.item()) for i, f in enumerate(factors)])
        torch.testing.assert_close(ours(x, factors), expected, atol=2e-6, rtol=0)


def test_float64_views_stay_float64() -> None:
    x = images(2).double()
    view = SimCLRAugmentation(blur_probability=1.0)(x, torch.Generator().manual_seed(0))
    assert view.dtype == torch.float64
    assert A.grayscale(x).dtype == torch.float64
