"""Paired verdicts from per-image results: exact McNemar test and a learning check.

Two models tested on the same images are compared on the images where exactly one of them is
right: under "no difference" each such image favours either model with probability ½, so the
count favouring the first is Binomial(discordant, ½) (exact McNemar test, two-sided,
``scipy.stats.binomtest``). A baseline "learns" when its clean accuracy is above chance with a
one-sided binomial p-value below 0.001.
"""

from __future__ import annotations

from collections.abc import Sequence

from scipy.stats import binomtest

ALPHA = 0.05
"""Level of the two-sided paired test."""


def mcnemar(first: Sequence[bool], second: Sequence[bool]) -> dict[str, object]:
    """Accuracies, their difference (points) and the exact McNemar verdict of ``first`` vs
    ``second`` (per-image correctness of two models on the same images, in the same order).

    Returns:
        ``{"accuracy", "baseline_accuracy", "delta_points", "first_only", "second_only",
        "p_value", "verdict"}``; the verdict is ``higher`` / ``lower`` when p < 0.05, else
        ``no significant difference``.
    """
    if len(first) != len(second) or not first:
        raise ValueError(f"need two equally long, non-empty per-image results, got "
                         f"{len(first)} and {len(second)}")
    first_only = sum(bool(a) and not bool(b) for a, b in zip(first, second, strict=True))
    second_only = sum(bool(b) and not bool(a) for a, b in zip(first, second, strict=True))
    discordant = first_only + second_only
    p_value = binomtest(first_only, discordant, 0.5).pvalue if discordant else 1.0
    verdict = "no significant difference"
    if p_value < ALPHA:
        verdict = "higher" if first_only > second_only else "lower"
    images = len(first)
    accuracy, baseline = sum(map(bool, first)) / images, sum(map(bool, second)) / images
    return {"accuracy": accuracy, "baseline_accuracy": baseline,
            "delta_points": round(100 * (accuracy - baseline), 2), "first_only": first_only,
            "second_only": second_only, "p_value": float(p_value), "verdict": verdict}


def learns(correct: int, images: int, classes: int) -> dict[str, object]:
    """Whether ``correct`` of ``images`` is above the chance rate 1/``classes`` (one-sided
    binomial test, p < 0.001)."""
    p_value = binomtest(correct, images, 1 / classes, alternative="greater").pvalue
    return {"accuracy": correct / images, "chance": 1 / classes, "p_value": float(p_value),
            "learns": bool(p_value < 1e-3)}
