"""CERTIFY picks the candidate class from the n0 selection draw, then counts it in n fresh ones."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import beta, norm

from lit_robust.evaluation.smoothing import ABSTAIN, SmoothedClassifier
from tests.evaluation.toy_models import PhaseClassifier


def test_candidate_comes_from_the_selection_draw() -> None:
    # selection (n0 = 20 samples) says class 1, the n = 200 estimation samples say class 0:
    # CERTIFY must abstain (n_A = 0 for the candidate), not certify class 0.
    smoothed = SmoothedClassifier(PhaseClassifier(20, first=1, then=0), num_classes=3,
                                  sigma=0.25)
    prediction, radius = smoothed.certify(torch.rand(1, 2, 2), n0=20, n=200, alpha=0.001,
                                          batch_size=20)
    assert (prediction, radius) == (ABSTAIN, 0.0)


def test_candidate_is_counted_only_in_the_estimation_draw() -> None:
    # selection says class 2; 150 of the 200 estimation samples say 2 (the last 50 say 0).
    model = PhaseClassifier(20 + 150, first=2, then=0)
    smoothed = SmoothedClassifier(model, num_classes=3, sigma=0.5)
    prediction, radius = smoothed.certify(torch.rand(1, 2, 2), n0=20, n=200, alpha=0.001,
                                          batch_size=10)
    p_lower = beta.ppf(0.001, 150, 200 - 150 + 1)  # one-sided Clopper–Pearson
    assert prediction == 2
    assert radius == pytest.approx(0.5 * norm.ppf(p_lower), rel=1e-9)
    assert model.seen == 220
