"""Exact binomial statistics behind randomized-smoothing PREDICT and CERTIFY.

Cohen, Rosenfeld and Kolter, "Certified Adversarial Robustness via Randomized Smoothing",
ICML 2019: PREDICT abstains unless a two-sided binomial test rejects "the top two classes are
equally likely"; CERTIFY lower-bounds the top-class probability with a one-sided
Clopper–Pearson interval and turns it into an L2 radius σ·Φ⁻¹(p̲_A).
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import ArrayLike
from scipy.stats import beta, binomtest, norm
from torch import Tensor


def clopper_pearson_lower(n_a: ArrayLike, n: ArrayLike, alpha: float) -> float | np.ndarray:
    """One-sided (1 − α) Clopper–Pearson lower confidence bound of a binomial proportion.

    The bound is the α-quantile of Beta(n_a, n − n_a + 1), and exactly 0 when ``n_a = 0``.
    It equals ``statsmodels.proportion_confint(n_a, n, alpha=2 * alpha, method="beta")[0]``,
    the function Cohen et al.'s reference code calls. For ``n_a = n`` it is ``alpha ** (1 / n)``.

    Args:
        n_a: successes (scalar or array), ``0 <= n_a <= n``.
        n: trials (scalar or array broadcastable with ``n_a``), ``n >= 1``.
        alpha: one-sided error probability in (0, 1).

    Returns:
        A float for scalar input, otherwise an array of the broadcast shape.

    Raises:
        ValueError: for ``alpha`` outside (0, 1), ``n < 1`` or ``n_a`` outside [0, n].
    """
    _check_alpha(alpha)
    n_a_arr = np.asarray(n_a, dtype=np.float64)
    n_arr = np.asarray(n, dtype=np.float64)
    if np.any(n_arr < 1):
        raise ValueError(f"the number of trials n must be >= 1, got {n}")
    if np.any(n_a_arr < 0) or np.any(n_a_arr > n_arr):
        raise ValueError(f"successes n_a must lie in [0, n], got n_a={n_a}, n={n}")
    safe_a = np.where(n_a_arr > 0, n_a_arr, 1.0)
    bound = np.where(n_a_arr > 0, beta.ppf(alpha, safe_a, n_arr - n_a_arr + 1), 0.0)
    return float(bound) if bound.ndim == 0 else bound


def smallest_certifying_n(alpha: float) -> int:
    """The fewest CERTIFY samples ``n`` that can certify anything at failure probability α.

    With every one of ``n`` samples voting for the top class the lower bound is
    ``alpha ** (1 / n)`` (:func:`clopper_pearson_lower`), and CERTIFY abstains unless it
    exceeds ½: smaller ``n`` abstain on every image (e.g. ``n = 5`` at ``α = 0.001``; the
    answer there is 10).

    Raises:
        ValueError: for ``alpha`` outside (0, 1).
    """
    _check_alpha(alpha)
    n = max(1, int(np.floor(np.log(alpha) / np.log(0.5))))
    while clopper_pearson_lower(n, n, alpha) <= 0.5:
        n += 1
    while n > 1 and clopper_pearson_lower(n - 1, n - 1, alpha) > 0.5:
        n -= 1
    return n


def binomial_two_sided_pvalue(n_a: int, n_a_plus_n_b: int, p: float = 0.5) -> float:
    """Exact two-sided binomial test p-value of ``n_a`` successes in ``n_a_plus_n_b`` trials.

    PREDICT uses it with the counts of the top two classes and ``p = 0.5``; with no trials at
    all there is no evidence, so the p-value is 1.

    Args:
        n_a: count of the most frequent class.
        n_a_plus_n_b: count of the top two classes together.
        p: success probability under the null hypothesis.

    Raises:
        ValueError: for counts that are negative or ``n_a > n_a_plus_n_b``, or ``p`` outside
            [0, 1].
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must lie in [0, 1], got {p}")
    if n_a < 0 or n_a > n_a_plus_n_b:
        raise ValueError(f"need 0 <= n_a <= n_a_plus_n_b, got n_a={n_a}, total={n_a_plus_n_b}")
    if n_a_plus_n_b == 0:
        return 1.0
    return float(binomtest(int(n_a), int(n_a_plus_n_b), p, alternative="two-sided").pvalue)


def certified_radius(
    p_lower: float | np.ndarray | Tensor, sigma: float
) -> float | np.ndarray | Tensor:
    """L2 radius σ·Φ⁻¹(p̲_A) certified by a lower bound ``p_lower`` on the top-class probability.

    Pure formula: it is negative for ``p_lower < 0.5``, where CERTIFY abstains instead.

    Args:
        p_lower: lower confidence bound(s) of p_A in [0, 1]; float, NumPy array or tensor
            (the result has the same kind).
        sigma: standard deviation of the smoothing noise in [0, 1] pixel units.

    Raises:
        ValueError: for ``sigma <= 0``.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if isinstance(p_lower, Tensor):
        return sigma * torch.special.ndtri(p_lower)
    radius = sigma * norm.ppf(p_lower)
    return float(radius) if np.ndim(radius) == 0 else radius


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
