"""Figures of a comparison: the ΔRA-vs-ΔSA scatter with its fit, and the clean-vs-robust
trade-off across runs. Plain :class:`~matplotlib.figure.Figure` objects (no pyplot state), so
they render to PNG and to TensorBoard alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from matplotlib.figure import Figure

from lit_robust.analysis.fit import DeltaPoint, LinearFit
from lit_robust.analysis.reports import MetricSpec
from lit_robust.analysis.tables import PivotTable


def _scale(spec: MetricSpec) -> float:
    return 100.0 if spec.is_accuracy else 1.0


def _unit(spec: MetricSpec, change: bool) -> str:
    if not spec.is_accuracy:
        return ""
    return " (points)" if change else " (%)"


def delta_scatter_figure(
    points: Sequence[DeltaPoint],
    fit: LinearFit | None,
    x: MetricSpec,
    y: MetricSpec,
    baseline: str,
) -> Figure:
    """Each run's (ΔSA, ΔRA) vs ``baseline``, one colour per row, and the fitted line."""
    figure = Figure(figsize=(6, 4.5), layout="constrained")
    axes = figure.add_subplot()
    sx, sy = _scale(x), _scale(y)
    rows = list(dict.fromkeys(point.row for point in points))
    for row in rows:
        mine = [p for p in points if p.row == row]
        axes.scatter([p.dx * sx for p in mine], [p.dy * sy for p in mine], label=row)
        for point in mine:
            if point.col:
                axes.annotate(point.col, (point.dx * sx, point.dy * sy), fontsize=7,
                              textcoords="offset points", xytext=(3, 3))
    if fit is not None:
        xs = [p.dx * sx for p in points]
        line_x = [min(xs), max(xs)]
        line_y = [(fit.intercept + fit.slope * value / sx) * sy for value in line_x]
        r2 = "n/a" if math.isnan(fit.r2) else f"{fit.r2:.3f}"
        axes.plot(line_x, line_y, color="black", linewidth=1,
                  label=f"fit: slope {fit.slope * sy / sx:.3g}, R² = {r2}")
    axes.axhline(0, color="grey", linewidth=0.5)
    axes.axvline(0, color="grey", linewidth=0.5)
    axes.set_xlabel(f"Δ {x.label} vs {baseline}{_unit(x, True)}")
    axes.set_ylabel(f"Δ {y.label} vs {baseline}{_unit(y, True)}")
    axes.legend(fontsize=8)
    return figure


def tradeoff_figure(table: PivotTable, clean: MetricSpec, robust: MetricSpec) -> Figure:
    """Clean vs robust value of every (row, column group) cell, one colour per row."""
    figure = Figure(figsize=(6, 4.5), layout="constrained")
    axes = figure.add_subplot()
    sx, sy = _scale(clean), _scale(robust)
    for row in table.rows:
        cells = [(col, table.value(row, col, clean.label), table.value(row, col, robust.label))
                 for col in table.cols]
        cells = [cell for cell in cells if not (math.isnan(cell[1]) or math.isnan(cell[2]))]
        if not cells:
            continue
        axes.scatter([c * sx for _, c, _ in cells], [r * sy for _, _, r in cells],
                     label=" / ".join(row))
        for col, c, r in cells:
            if col:
                axes.annotate(" · ".join(col), (c * sx, r * sy), fontsize=7,
                              textcoords="offset points", xytext=(3, 3))
    axes.set_xlabel(f"{clean.label}{_unit(clean, False)}")
    axes.set_ylabel(f"{robust.label}{_unit(robust, False)}")
    axes.set_title("clean vs robust trade-off")
    axes.legend(fontsize=8)
    return figure
