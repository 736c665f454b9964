"""ΔRA vs ΔSA: each run's change of robust and clean accuracy vs a baseline, and the
least-squares line through those points with its R² (Figures 2–3 of Vaishnavi et al.,
"A Study of the Effects of Transfer Learning on Adversarial Robustness", TMLR).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from lit_robust.analysis.reports import ComparisonError, MetricSpec
from lit_robust.analysis.tables import PivotTable


@dataclass(frozen=True)
class DeltaPoint:
    """One (row, column group) cell's change vs the baseline in the same column group."""

    row: str
    col: str
    dx: float
    dy: float


@dataclass(frozen=True)
class LinearFit:
    """``y ≈ intercept + slope · x`` by least squares, with R² = 1 − SS_res / SS_tot
    (NaN when the y values do not vary) over ``n`` points."""

    slope: float
    intercept: float
    r2: float
    n: int


def delta_points(change: PivotTable, x: MetricSpec, y: MetricSpec) -> list[DeltaPoint]:
    """The cells of a change table that have both metrics, as points (Δx, Δy)."""
    if change.kind != "change":
        raise ComparisonError("delta points need an absolute-change table (change_table)")
    points = []
    for row in change.rows:
        for col in change.cols:
            dx, dy = change.value(row, col, x.label), change.value(row, col, y.label)
            if not (math.isnan(dx) or math.isnan(dy)):
                points.append(DeltaPoint(" / ".join(row), " · ".join(col), dx, dy))
    return points


def least_squares(xs: Sequence[float], ys: Sequence[float]) -> LinearFit:
    """The least-squares line through the points.

    Raises:
        ComparisonError: for fewer than two points or x values that do not vary.
    """
    n = len(xs)
    if n != len(ys) or n < 2:
        raise ComparisonError(f"a line fit needs at least two points, got {n}")
    mean_x, mean_y = math.fsum(xs) / n, math.fsum(ys) / n
    sxx = math.fsum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        raise ComparisonError("a line fit needs x values that vary; all points have the same x")
    sxy = math.fsum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    intercept = mean_y - slope * mean_x
    ss_res = math.fsum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    ss_tot = math.fsum((y - mean_y) ** 2 for y in ys)
    r2 = 1 - ss_res / ss_tot if ss_tot > 0 else math.nan
    return LinearFit(slope=slope, intercept=intercept, r2=r2, n=n)
