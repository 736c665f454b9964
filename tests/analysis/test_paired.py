"""The paired comparison: exact McNemar by hand, a planted paired difference found, the paired
interval narrower than the unpaired one on correlated results, and the verdicts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from lit_robust.analysis.paired import (
    BOOTSTRAP_RESAMPLES,
    bootstrap_mean_differences,
    bootstrap_pvalue,
    mcnemar_exact_pvalue,
    paired_difference,
    paired_verdict,
)
from lit_robust.evaluation.per_image import PerImageResult

N = 2000


def planted(only_ours: int, only_baseline: int, accuracy: float = 0.6,
            seed: int = 0) -> tuple[PerImageResult, PerImageResult]:
    """A baseline right on about ``accuracy`` of N images, and a run that differs from it on
    exactly ``only_ours`` images it gets right instead and ``only_baseline`` it gets wrong."""
    rng = np.random.default_rng(seed)
    baseline = (rng.random(N) < accuracy).astype(int)
    wrong, right = np.flatnonzero(baseline == 0), np.flatnonzero(baseline == 1)
    ours = baseline.copy()
    ours[rng.choice(wrong, only_ours, replace=False)] = 1
    ours[rng.choice(right, only_baseline, replace=False)] = 0
    index = np.arange(N)
    return PerImageResult(index, ours), PerImageResult(index, baseline)


def test_exact_mcnemar_by_hand() -> None:
    assert mcnemar_exact_pvalue(0, 5) == pytest.approx(2 / 32)  # 2 * (1/2)^5
    assert mcnemar_exact_pvalue(9, 1) == pytest.approx(2 * 11 / 1024)  # 2 * (1 + 10) / 2^10
    assert mcnemar_exact_pvalue(7, 7) == 1.0
    assert mcnemar_exact_pvalue(0, 0) == 1.0
    with pytest.raises(ValueError):
        mcnemar_exact_pvalue(-1, 2)


def test_a_planted_paired_difference_is_found_and_the_unpaired_test_misses_it() -> None:
    """+2 points from 60 images gained and 20 lost of 2,000: McNemar p = 2·P(X ≤ 20), X ~
    Bin(80, 1/2) ≈ 1e-5, so the paired verdict is 'reproduced'. The unpaired standard error
    √(2·0.6·0.4/2000) ≈ 1.55 points puts +2 within 2 SE: the old rule would call it noise."""
    ours, baseline = planted(60, 20)
    difference = paired_difference(ours, baseline)
    assert difference.delta == pytest.approx(0.02)
    assert (difference.only_ours, difference.only_baseline) == (60, 20)
    assert difference.test == "exact McNemar"
    assert difference.p_value == pytest.approx(2 * binom.cdf(20, 80, 0.5))
    assert paired_verdict(difference, "up") == "reproduced"
    low, high = difference.interval
    assert low < 0.02 < high and low > 0
    unpaired_low, unpaired_high = difference.unpaired_interval
    assert unpaired_low < 0 < unpaired_high
    # correlated results: the paired interval is far narrower than the unpaired one
    assert (high - low) < 0.4 * (unpaired_high - unpaired_low)
    # the paired bootstrap interval of a binary difference is the Wald interval
    # Δ ± 1.96·√((b + c)/n − Δ²)/√n, up to resampling noise
    wald = 1.96 * np.sqrt((80 / N - 0.02 ** 2) / N)
    assert (high - low) / 2 == pytest.approx(wald, rel=0.05)


def test_the_reverse_and_a_null_plant() -> None:
    ours, baseline = planted(60, 20)
    assert paired_verdict(paired_difference(baseline, ours), "up") == "not reproduced"
    same = paired_difference(*planted(40, 40))
    assert same.delta == 0 and same.p_value == 1.0
    assert paired_verdict(same, "up") == "within noise"


def test_kept_claims_are_non_inferiority_checks_on_the_paired_interval() -> None:
    tiny_loss = paired_difference(*planted(0, 2))  # -0.1 points, interval within [-0.5, 0]
    assert paired_verdict(tiny_loss, "kept", tolerance=0.005) == "reproduced"
    big_loss = paired_difference(*planted(0, 40))  # -2 points, interval far below -0.5
    assert big_loss.interval[1] < -0.005
    assert paired_verdict(big_loss, "kept", tolerance=0.005) == "not reproduced"
    unclear = paired_difference(*planted(20, 30))  # -0.5 points, interval around it
    assert paired_verdict(unclear, "kept", tolerance=0.005) == "within noise"
    with pytest.raises(ValueError, match="'up' or 'kept'"):
        paired_verdict(unclear, "down")


def test_fractions_use_the_paired_bootstrap() -> None:
    """Corruption accuracy per image (counts out of 75): a planted shift of +3 of 75 on half
    of the images (+2 points) is found, with an interval far narrower than the unpaired one."""
    rng = np.random.default_rng(1)
    base = rng.integers(20, 70, size=N)
    ours = base.copy()
    ours[: N // 2] += 3
    index = np.arange(N)
    difference = paired_difference(PerImageResult(index, ours, 75),
                                   PerImageResult(index, base, 75))
    assert difference.test == "paired bootstrap" and difference.only_ours is None
    assert difference.delta == pytest.approx(3 / 75 / 2)
    # no resample of 20,000 reaches 0: the Monte Carlo p-value is its floor, not 0
    assert difference.p_value == pytest.approx(2 / (BOOTSTRAP_RESAMPLES + 1))
    assert paired_verdict(difference, "up") == "reproduced"
    assert difference.interval[1] - difference.interval[0] < 0.2 * (
        difference.unpaired_interval[1] - difference.unpaired_interval[0])


def test_multinomial_bootstrap_matches_resampling_images() -> None:
    differences = np.random.default_rng(2).choice([-1, 0, 0, 0, 1, 1], size=500).astype(float)
    means = bootstrap_mean_differences(differences, resamples=20_000, seed=3)
    rng = np.random.default_rng(4)
    naive = differences[rng.integers(0, 500, size=(4000, 500))].mean(axis=1)
    assert means.mean() == pytest.approx(differences.mean(), abs=0.002)
    assert means.std() == pytest.approx(naive.std(), rel=0.05)
    assert means.std() == pytest.approx(differences.std() / np.sqrt(500), rel=0.03)


def test_runs_on_different_images_cannot_be_paired() -> None:
    ours = PerImageResult(np.arange(10), np.ones(10, dtype=int))
    other = PerImageResult(np.arange(1, 11), np.ones(10, dtype=int))
    with pytest.raises(ValueError, match="different images"):
        paired_difference(ours, other)
    with pytest.raises(ValueError, match="different evaluation settings"):
        paired_difference(ours, PerImageResult(np.arange(10), np.ones(10, dtype=int), 5))


def test_the_bootstrap_pvalue_counts_the_observed_difference() -> None:
    """(beyond + 1)/(resamples + 1) on each side, doubled: 0 of 20,000 gives 2/20,001, not 0;
    half of them gives 1."""
    assert bootstrap_pvalue(0, 20_000) == pytest.approx(2 / 20_001)
    assert bootstrap_pvalue(99, 999) == pytest.approx(0.2)
    assert bootstrap_pvalue(10_000, 20_000) == 1.0
