"""Paired comparison of two runs tested on the same images: exact McNemar test, paired
bootstrap interval and a verdict per claimed direction.

Two methods evaluated on the same test images share the images' difficulty, so their accuracy
difference varies far less by chance than two independent accuracies would: an image both get
right (or both wrong) says nothing about which is better. Only the discordant images count.
Each run's ``report.json`` keeps which images each metric got right
(:mod:`lit_robust.evaluation.per_image`); this module aligns two runs' images and:

- for a metric with one prediction per image (clean, PGD, AutoAttack), decides the direction
  with the **exact McNemar test**: with ``b`` images only the first run gets right and ``c``
  only the second, the two-sided p-value is ``min(1, 2·P(X ≤ min(b, c)))`` for
  ``X ~ Binomial(b + c, 1/2)`` (McNemar, Psychometrika 1947; the exact form of Fay, 2010);
- for a per-image fraction (corruption accuracy over corruptions × severities), with a
  **paired bootstrap** test: images resampled with replacement, the two-sided p-value twice
  the smaller share of resampled differences on either side of 0, counted as a Monte Carlo
  p-value (:func:`bootstrap_pvalue`: at least 2/(resamples + 1), never 0);
- in both cases reports the **paired bootstrap confidence interval** of the difference (the
  percentile interval of the mean per-image difference over resamples of the images; exact
  and fast because the difference takes few distinct values, so a resample is a multinomial
  draw of their counts) beside the **unpaired** interval ``Δ ± z·√(SE₁² + SE₂²)`` that
  ignores the pairing.

Verdicts (:func:`paired_verdict`): an ``up`` claim is *reproduced* when the test rejects
"no difference" at level α (default 0.05) with the difference positive, *not reproduced* when
it rejects with the difference negative, else *within noise*. A ``kept`` claim (not lower by
more than a tolerance) is a non-inferiority check on the paired interval: *reproduced* when
its lower end is ≥ −tolerance, *not reproduced* when its upper end is below −tolerance, else
*within noise*.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.stats import binom, norm

from lit_robust.evaluation.per_image import PerImageResult, decode

BOOTSTRAP_RESAMPLES = 20_000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class PairedDifference:
    """The paired comparison of one metric between two runs (accuracies as fractions).

    Attributes:
        images: images both runs were evaluated on.
        ours, baseline: the two accuracies on those images.
        delta: ``ours − baseline``.
        interval: the paired bootstrap confidence interval of ``delta``.
        unpaired_interval: ``delta ± z·√(SE₁² + SE₂²)``, which ignores the pairing.
        confidence: the intervals' confidence level.
        test: ``"exact McNemar"`` or ``"paired bootstrap"``.
        p_value: two-sided p-value of "no difference".
        only_ours, only_baseline: images only one run got right (binary metrics; else
            ``None``).
    """

    images: int
    ours: float
    baseline: float
    delta: float
    interval: tuple[float, float]
    unpaired_interval: tuple[float, float]
    confidence: float
    test: str
    p_value: float
    only_ours: int | None = None
    only_baseline: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def mcnemar_exact_pvalue(only_ours: int, only_baseline: int) -> float:
    """Two-sided exact McNemar p-value from the two discordant counts."""
    if only_ours < 0 or only_baseline < 0:
        raise ValueError("discordant counts must be >= 0")
    discordant = only_ours + only_baseline
    if discordant == 0:
        return 1.0
    return min(1.0, 2.0 * float(binom.cdf(min(only_ours, only_baseline), discordant, 0.5)))


def bootstrap_pvalue(beyond: int, resamples: int) -> float:
    """Two-sided Monte Carlo p-value of "no difference" from ``beyond`` of ``resamples``
    resampled differences on the smaller side of 0: ``min(1, 2·(beyond + 1)/(resamples + 1))``
    (Davison and Hinkley, Bootstrap Methods, 1997, §4.2), never 0 however few fall there."""
    return min(1.0, 2.0 * (beyond + 1) / (resamples + 1))


def bootstrap_mean_differences(differences: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                               seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """The mean of ``differences`` over ``resamples`` resamples of its entries with
    replacement, drawn as multinomial counts of its distinct values (the same distribution as
    resampling the entries one by one)."""
    values, counts = np.unique(differences, return_counts=True)
    draws = np.random.default_rng(seed).multinomial(differences.size, counts / differences.size,
                                                    size=resamples)
    return draws @ values.astype(np.float64) / differences.size


def align(ours: PerImageResult, baseline: PerImageResult) -> tuple[np.ndarray, np.ndarray]:
    """Both runs' per-image fractions on the same test images, in index order.

    Raises:
        ValueError: when the runs were evaluated on different images or with different
            per-image maxima; a paired comparison needs the same images.
    """
    if ours.maximum != baseline.maximum:
        raise ValueError(f"per-image counts out of {ours.maximum} and {baseline.maximum} "
                         "cannot be paired: the runs used different evaluation settings")
    if not np.array_equal(ours.index, baseline.index):
        only = np.setxor1d(ours.index, baseline.index)
        raise ValueError(f"the runs were tested on different images ({ours.index.size} and "
                         f"{baseline.index.size}, {only.size} in one only, e.g. test index "
                         f"{int(only[0])}); test both on the same test subset to pair them")
    if ours.index.size == 0:
        raise ValueError("no per-image results to compare")
    return ours.fractions, baseline.fractions


def paired_difference(ours: PerImageResult, baseline: PerImageResult, confidence: float = 0.95,
                      resamples: int = BOOTSTRAP_RESAMPLES,
                      seed: int = BOOTSTRAP_SEED) -> PairedDifference:
    """Compare one metric of two runs image by image (see the module docstring)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    a, b = align(ours, baseline)
    n = a.size
    differences = a - b
    delta = float(differences.mean())
    means = bootstrap_mean_differences(differences, resamples, seed)
    tail = (1 - confidence) / 2
    interval = (float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail)))
    half = norm.ppf(1 - tail) * math.sqrt(a.var() / n + b.var() / n)
    unpaired = (delta - half, delta + half)
    if ours.maximum == 1:
        only_ours = int(((a == 1) & (b == 0)).sum())
        only_baseline = int(((a == 0) & (b == 1)).sum())
        test, p_value = "exact McNemar", mcnemar_exact_pvalue(only_ours, only_baseline)
    else:
        only_ours = only_baseline = None
        beyond = min(int((means <= 0).sum()), int((means >= 0).sum()))
        test, p_value = "paired bootstrap", bootstrap_pvalue(beyond, resamples)
    return PairedDifference(n, float(a.mean()), float(b.mean()), delta, interval, unpaired,
                            confidence, test, p_value, only_ours, only_baseline)


def paired_verdict(difference: PairedDifference, expected: str, tolerance: float = 0.0,
                   alpha: float = 0.05) -> str:
    """The verdict on a claimed direction (``"up"`` or ``"kept"``; ``tolerance`` as a
    fraction, like the accuracies), see the module docstring."""
    if expected == "up":
        if difference.p_value >= alpha:
            return "within noise"
        return "reproduced" if difference.delta > 0 else "not reproduced"
    if expected != "kept":
        raise ValueError(f"expected must be 'up' or 'kept', got {expected!r}")
    low, high = difference.interval
    if low >= -tolerance:
        return "reproduced"
    return "not reproduced" if high < -tolerance else "within noise"


def load_per_image(report: str | Path) -> dict[str, PerImageResult]:
    """The per-image results of a ``report.json`` (empty when it holds none)."""
    document = json.loads(Path(report).read_text(encoding="utf-8"))
    return decode(document.get("per_image", {}))

