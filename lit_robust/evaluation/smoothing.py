"""Randomized smoothing: the smoothed classifier's PREDICT and CERTIFY.

Cohen, Rosenfeld and Kolter, "Certified Adversarial Robustness via Randomized Smoothing",
ICML 2019. The smoothed classifier g(x) = argmax_c P(f(x + ε) = c), ε ~ N(0, σ²I), is evaluated
by Monte Carlo sampling of the base classifier f. Noise is added in [0, 1] pixel space and the
noisy images are *not* clamped (clamping would change the distribution the certificate is
about).

Sampling is pure inference: the class counts accumulate on the model's device with
``scatter_add_`` and are read back once per call, after all forward passes, so the
device never waits for the host inside the sampling loop (DESIGN §8).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from lit_robust.evaluation.certification_stats import (
    binomial_two_sided_pvalue,
    certified_radius,
    clopper_pearson_lower,
)
from lit_robust.models.modes import eval_mode

ABSTAIN = -1
"""Prediction returned when the smoothed classifier abstains."""


class SmoothedClassifier:
    """Monte Carlo PREDICT and CERTIFY of a Gaussian-smoothed base classifier.

    Args:
        base: base classifier taking [0, 1] pixel-space images (normalization inside) and
            returning logits of shape (N, ``num_classes``). It runs in eval mode; the mode of
            every submodule is restored afterwards.
        num_classes: number of classes of ``base``.
        sigma: noise standard deviation in pixel units (e.g. 0.25, 0.5, 1.0).
        bf16: run the base classifier under bfloat16 autocast (for GPUs). The certificate then
            holds for the bf16 base classifier, which is the one that was sampled.

    Raises:
        ValueError: for ``num_classes < 2`` or ``sigma <= 0``.
    """

    def __init__(self, base: nn.Module, num_classes: int, sigma: float, bf16: bool = False) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if sigma <= 0:
            raise ValueError(
                f"sigma must be > 0 (pixel units, e.g. 0.25 or 0.5), got {sigma}"
            )
        self.base = base
        self.num_classes = num_classes
        self.sigma = sigma
        self.bf16 = bf16

    def sample_counts(
        self, x: Tensor, num: int, batch_size: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """Class counts of the base classifier over ``num`` noisy copies of each image.

        Copies of several images share forward passes of ``batch_size`` samples; the counts
        stay on ``x.device`` (no host synchronization).

        Args:
            x: images of shape (B, C, H, W) in [0, 1].
            num: noisy samples per image.
            batch_size: samples per forward pass.
            generator: random generator on ``x.device`` for reproducible noise.

        Returns:
            Long tensor of shape (B, num_classes) on ``x.device``; each row sums to ``num``.
        """
        _check_positive(num=num, batch_size=batch_size)
        if x.dim() != 4:
            raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(x.shape)}")
        _check_generator(generator, x.device)
        images, classes = x.shape[0], self.num_classes
        counts = torch.zeros(images * classes, dtype=torch.long, device=x.device)
        total = images * num
        with torch.no_grad(), eval_mode(self.base):
            for start in range(0, total, batch_size):
                stop = min(start + batch_size, total)
                owner = torch.arange(start, stop, device=x.device) // num
                noise = torch.randn((stop - start, *x.shape[1:]), generator=generator,
                                    device=x.device, dtype=x.dtype)
                clean = x if images == 1 else x.index_select(0, owner)  # one image: broadcast
                noisy = torch.add(clean, noise, alpha=self.sigma)
                with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                    logits = self.base(noisy)
                if logits.dim() != 2 or logits.shape[1] != classes:
                    raise ValueError(
                        f"the base classifier returned logits of shape {tuple(logits.shape)}, "
                        f"expected (N, {classes}); check num_classes"
                    )
                # scatter_add_, not bincount: CUDA's bincount reads the maximum on the host
                votes = owner * classes + logits.argmax(1)
                counts.scatter_add_(0, votes, torch.ones_like(votes))
        return counts.view(images, classes)

    def predict(
        self,
        x: Tensor,
        n: int,
        alpha: float,
        batch_size: int,
        generator: torch.Generator | None = None,
    ) -> int:
        """PREDICT: the smoothed classifier's class for one image, or :data:`ABSTAIN`.

        The top-two class counts n_A, n_B over ``n`` samples are compared with an exact
        two-sided binomial test (p = 0.5); the prediction is returned only if its p-value is
        at most ``alpha``, so a wrong answer has probability at most ``alpha``.

        Args:
            x: one image of shape (C, H, W) in [0, 1].
            n: Monte Carlo samples.
            alpha: failure probability.
            batch_size: samples per forward pass.
            generator: random generator on ``x.device``.
        """
        _check_image(x)
        _check_alpha(alpha)
        counts = self.sample_counts(x.unsqueeze(0), n, batch_size, generator)[0]
        top2_counts, top2_classes = counts.topk(2)
        (n_a, n_b), (c_a, _) = torch.stack([top2_counts, top2_classes]).tolist()
        if binomial_two_sided_pvalue(n_a, n_a + n_b, 0.5) > alpha:
            return ABSTAIN
        return int(c_a)

    def certify(
        self,
        x: Tensor,
        n0: int,
        n: int,
        alpha: float,
        batch_size: int,
        generator: torch.Generator | None = None,
    ) -> tuple[int, float]:
        """CERTIFY one image: ``(predicted class, certified L2 radius)`` or ``(ABSTAIN, 0.0)``.

        ``n0`` samples select the candidate class ĉ_A; ``n`` fresh samples count n_A; the
        one-sided (1 − α) Clopper–Pearson bound p̲_A gives the radius σ·Φ⁻¹(p̲_A), and the
        classifier abstains when p̲_A < ½.

        Args:
            x: one image of shape (C, H, W) in [0, 1].
            n0: selection samples.
            n: estimation samples.
            alpha: failure probability.
            batch_size: samples per forward pass.
            generator: random generator on ``x.device``.
        """
        _check_image(x)
        predictions, radii = self.certify_batch(x.unsqueeze(0), n0, n, alpha, batch_size,
                                                generator)
        return int(predictions[0]), float(radii[0])

    def certify_batch(
        self,
        x: Tensor,
        n0: int,
        n: int,
        alpha: float,
        batch_size: int,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """CERTIFY several images at once, sharing forward passes between them.

        Each image gets its own ``n0`` selection samples and ``n`` estimation samples, so the
        result has exactly the semantics of :meth:`certify` applied to each image (only the
        random numbers are drawn in a different order).

        Args:
            x: images of shape (B, C, H, W) in [0, 1].
            n0: selection samples per image.
            n: estimation samples per image.
            alpha: failure probability per image.
            batch_size: samples per forward pass.
            generator: random generator on ``x.device``.

        Returns:
            ``(predictions, radii)`` on the CPU: long tensor with :data:`ABSTAIN` where the
            classifier abstains, and float64 radii (0 where it abstains).
        """
        _check_alpha(alpha)
        _check_positive(n0=n0, n=n)
        selection = self.sample_counts(x, n0, batch_size, generator)
        estimation = self.sample_counts(x, n, batch_size, generator)
        candidate = selection.argmax(dim=1)
        n_a = estimation.gather(1, candidate.unsqueeze(1)).squeeze(1)
        candidate, n_a = torch.stack([candidate, n_a]).cpu().numpy()
        p_lower = np.asarray(clopper_pearson_lower(n_a, n, alpha))
        certified = p_lower >= 0.5
        radii = np.where(certified, certified_radius(np.maximum(p_lower, 0.5), self.sigma), 0.0)
        predictions = np.where(certified, candidate, ABSTAIN)
        return torch.from_numpy(predictions).long(), torch.from_numpy(radii).double()


def _check_image(x: Tensor) -> None:
    if x.dim() != 3:
        raise ValueError(
            f"expected one image of shape (C, H, W), got {tuple(x.shape)}; use certify_batch "
            "or sample_counts for batches"
        )


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


def _check_generator(generator: torch.Generator | None, device: torch.device) -> None:
    if generator is not None and generator.device.type != device.type:
        raise ValueError(
            f"the generator is on {generator.device} but the images are on {device}; create it "
            f"with torch.Generator(device={str(device)!r})"
        )
