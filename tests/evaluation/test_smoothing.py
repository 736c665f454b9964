from __future__ import annotations

import pytest
import torch
from scipy.stats import norm
from torch import Tensor, nn

from lit_robust.evaluation.smoothing import ABSTAIN, SmoothedClassifier
from tests.evaluation.toy_models import ConstantClassifier


class LinearBinary(nn.Module):
    """Two logits (0, w·x + b): class 1 exactly where w·x + b > 0."""

    def __init__(self, w: Tensor, b: float) -> None:
        super().__init__()
        self.w = w
        self.b = b

    def forward(self, x: Tensor) -> Tensor:
        score = x.flatten(1) @ self.w.flatten() + self.b
        return torch.stack([torch.zeros_like(score), score], dim=1)


def test_predict_abstains_with_ten_unanimous_samples_at_alpha_0001() -> None:
    smoothed = SmoothedClassifier(ConstantClassifier(3, 2), num_classes=3, sigma=0.25)
    x = torch.rand(3, 4, 4)
    # 10 of 10 agree, but the two-sided p-value 2 * 0.5^10 = 0.00195 exceeds 0.001.
    assert smoothed.predict(x, n=10, alpha=0.001, batch_size=4) == ABSTAIN
    assert smoothed.predict(x, n=10, alpha=0.002, batch_size=4) == 2
    assert smoothed.predict(x, n=11, alpha=0.001, batch_size=4) == 2


def test_constant_classifier_certifies_exact_radius() -> None:
    sigma, n, alpha = 0.5, 1000, 0.001
    smoothed = SmoothedClassifier(ConstantClassifier(4, 1), num_classes=4, sigma=sigma)
    prediction, radius = smoothed.certify(torch.rand(3, 4, 4), n0=10, n=n, alpha=alpha,
                                          batch_size=300)
    assert prediction == 1
    assert radius == pytest.approx(sigma * norm.ppf(alpha ** (1 / n)), rel=1e-9)


def test_certify_abstains_when_lower_bound_below_half() -> None:
    # Class 1 exactly when the noise pushes the pixel sum above that of x: p_A = 1/2, so the
    # lower confidence bound is below 1/2 and CERTIFY must abstain.
    x = torch.rand(1, 4, 4)
    smoothed = SmoothedClassifier(LinearBinary(torch.ones(1, 4, 4), -float(x.sum())), 2, 0.25)
    generator = torch.Generator().manual_seed(0)
    assert smoothed.certify(x, n0=50, n=2000, alpha=0.001, batch_size=512,
                            generator=generator) == (ABSTAIN, 0.0)


def test_linear_classifier_radius_never_exceeds_distance_to_boundary() -> None:
    torch.manual_seed(0)
    w, b = torch.randn(1, 4, 4), 0.3
    sigma = 0.5
    smoothed = SmoothedClassifier(LinearBinary(w, b), num_classes=2, sigma=sigma)
    points = torch.rand(200, 1, 4, 4) * 2 - 0.5
    score = points.flatten(1) @ w.flatten() + b
    distance = score.abs() / w.norm()
    generator = torch.Generator().manual_seed(1)
    predictions, radii = smoothed.certify_batch(points, n0=100, n=2000, alpha=0.001,
                                                batch_size=4096, generator=generator)
    certified = predictions != ABSTAIN
    assert certified.sum() > 100
    # The smoothed linear classifier is the linear classifier itself, with exact radius
    # equal to the distance to the hyperplane. Each certificate exceeds it with probability
    # at most alpha = 0.001, so among 200 points more than 2 violations has probability
    # about 0.001 (a biased bound would violate for about half of them).
    assert torch.equal(predictions[certified], (score[certified] > 0).long())
    assert (radii[certified] > distance[certified].double()).sum() <= 2
    assert (radii[certified] / distance[certified].double()).mean() > 0.8
    # Points far from the boundary are certified; their radius is positive.
    assert torch.all(certified[distance > 2 * sigma])


def test_sample_counts_cover_every_sample_across_batches() -> None:
    smoothed = SmoothedClassifier(ConstantClassifier(3, 0), num_classes=3, sigma=0.1)
    counts = smoothed.sample_counts(torch.rand(2, 3, 4, 4), num=7, batch_size=3)
    assert counts.tolist() == [[7, 0, 0], [7, 0, 0]]


def test_same_generator_seed_reproduces_counts() -> None:
    x = torch.rand(1, 4, 4)
    smoothed = SmoothedClassifier(LinearBinary(torch.ones(1, 4, 4), -float(x.sum())), 2, 0.25)
    first = smoothed.sample_counts(x[None], 500, 128, torch.Generator().manual_seed(3))
    again = smoothed.sample_counts(x[None], 500, 128, torch.Generator().manual_seed(3))
    other = smoothed.sample_counts(x[None], 500, 128, torch.Generator().manual_seed(4))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_noise_is_not_clamped() -> None:
    seen: list[Tensor] = []

    class Recorder(ConstantClassifier):
        def forward(self, x: Tensor) -> Tensor:
            seen.append(x)
            return super().forward(x)

    smoothed = SmoothedClassifier(Recorder(2, 0), num_classes=2, sigma=1.0)
    smoothed.sample_counts(torch.zeros(1, 1, 4, 4), num=100, batch_size=100)
    noisy = torch.cat(seen)
    assert noisy.min() < -1.0 and noisy.max() > 1.0
    assert noisy.std().item() == pytest.approx(1.0, rel=0.1)


def test_base_runs_in_eval_mode_and_mode_is_restored() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.Flatten(),
                          nn.Linear(32, 2))
    model.train()
    before = model[1].running_mean.clone()
    SmoothedClassifier(model, 2, 0.25).certify(torch.rand(1, 4, 4), 10, 20, 0.01, 8)
    assert model.training and model[1].training
    assert torch.equal(model[1].running_mean, before)


def test_clear_errors() -> None:
    smoothed = SmoothedClassifier(ConstantClassifier(3, 0), num_classes=2, sigma=0.25)
    with pytest.raises(ValueError, match="num_classes"):
        smoothed.predict(torch.rand(1, 4, 4), n=5, alpha=0.01, batch_size=5)
    with pytest.raises(ValueError, match="one image"):
        smoothed.certify(torch.rand(2, 1, 4, 4), 5, 5, 0.01, 5)
    with pytest.raises(ValueError, match="sigma"):
        SmoothedClassifier(ConstantClassifier(3, 0), num_classes=3, sigma=0.0)
    with pytest.raises(ValueError, match="alpha"):
        smoothed.certify(torch.rand(1, 4, 4), 5, 5, 1.5, 5)
