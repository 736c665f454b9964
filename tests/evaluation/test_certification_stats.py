from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lit_robust.evaluation.certification_stats import (
    binomial_two_sided_pvalue,
    certified_radius,
    clopper_pearson_lower,
)


def test_clopper_pearson_all_successes_is_alpha_root() -> None:
    # P(Beta(n, 1) <= p) = p^n, so the alpha-quantile is alpha^(1/n).
    assert clopper_pearson_lower(100, 100, 0.001) == pytest.approx(0.001 ** (1 / 100), rel=1e-12)


def test_clopper_pearson_one_success() -> None:
    # P(Beta(1, n) <= p) = 1 - (1 - p)^n.
    assert clopper_pearson_lower(1, 10, 0.05) == pytest.approx(1 - 0.95 ** (1 / 10), rel=1e-12)
    assert clopper_pearson_lower(1, 1, 0.2) == pytest.approx(0.2, rel=1e-12)


def test_clopper_pearson_zero_successes_is_zero() -> None:
    assert clopper_pearson_lower(0, 50, 0.001) == 0.0


def test_clopper_pearson_known_value() -> None:
    # 990 of 1000 at alpha = 0.001: the bound solves P(Bin(1000, p) >= 990) = 0.001, i.e. the
    # tail sum over k >= 990 equals alpha (checked by summing the binomial pmf directly).
    bound = clopper_pearson_lower(990, 1000, 0.001)
    tail = sum(math.comb(1000, k) * bound**k * (1 - bound) ** (1000 - k) for k in range(990, 1001))
    assert tail == pytest.approx(0.001, rel=1e-6)
    assert 0.97 < bound < 0.99


def test_clopper_pearson_vectorized_matches_scalar() -> None:
    n_a = np.array([0, 1, 50, 100])
    bounds = clopper_pearson_lower(n_a, 100, 0.01)
    assert isinstance(bounds, np.ndarray)
    assert bounds.tolist() == pytest.approx([clopper_pearson_lower(int(k), 100, 0.01) for k in n_a])
    assert np.all(np.diff(bounds) > 0)


@pytest.mark.parametrize(("n_a", "n", "alpha"), [(5, 4, 0.1), (-1, 4, 0.1), (1, 0, 0.1),
                                                 (1, 4, 0.0), (1, 4, 1.0)])
def test_clopper_pearson_rejects_bad_input(n_a: int, n: int, alpha: float) -> None:
    with pytest.raises(ValueError):
        clopper_pearson_lower(n_a, n, alpha)


def test_binomial_pvalue_hand_computed() -> None:
    assert binomial_two_sided_pvalue(10, 10) == pytest.approx(2 * 0.5**10, rel=1e-12)
    # P(X >= 9) + P(X <= 1) for X ~ Bin(10, 1/2) = 2 * (1 + 10) / 1024.
    assert binomial_two_sided_pvalue(9, 10) == pytest.approx(22 / 1024, rel=1e-12)
    assert binomial_two_sided_pvalue(5, 10) == pytest.approx(1.0)
    assert binomial_two_sided_pvalue(0, 0) == 1.0


def test_binomial_pvalue_rejects_bad_counts() -> None:
    with pytest.raises(ValueError):
        binomial_two_sided_pvalue(3, 2)


def test_certified_radius_float_array_tensor() -> None:
    z975 = 1.959963984540054
    assert certified_radius(0.975, 0.5) == pytest.approx(0.5 * z975, rel=1e-9)
    assert certified_radius(0.5, 0.25) == 0.0
    assert certified_radius(np.array([0.5, 0.975]), 1.0).tolist() == pytest.approx([0.0, z975])
    radius = certified_radius(torch.tensor([0.975], dtype=torch.float64), 0.25)
    assert isinstance(radius, torch.Tensor)
    assert radius.item() == pytest.approx(0.25 * z975, rel=1e-9)
    with pytest.raises(ValueError):
        certified_radius(0.9, 0.0)
