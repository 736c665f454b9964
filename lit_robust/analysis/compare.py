"""Compare any set of runs: tables, ΔRA-vs-ΔSA fit, trade-off plot, written in every format.

:func:`compare` builds a :class:`Comparison` from report files; :meth:`Comparison.write`
writes it as markdown, JSON, CSV, PNG and TensorBoard figures::

    comparison = compare(["logs/"], rows=["method"], cols=["dataset"],
                         metrics=["clean=clean_acc", "pgd=robust_acc/pgd*"], baseline="AT")
    comparison.write("results/", name="gtsrb")
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from lit_robust.analysis.fit import DeltaPoint, LinearFit, delta_points, least_squares
from lit_robust.analysis.plots import delta_scatter_figure, tradeoff_figure
from lit_robust.analysis.reports import ComparisonError, MetricSpec, RunReport, load_reports
from lit_robust.analysis.tables import PivotTable, change_table, pivot


@dataclass
class Comparison:
    """The tables, points and fit of one comparison.

    Args:
        reports: the compared runs.
        table: absolute values.
        change: absolute change vs the baseline row (``None`` without a baseline).
        relative: relative change vs the baseline row (``None`` without a baseline).
        clean: the clean metric of the scatter and trade-off plot (``None`` with one metric).
        robust: the robust metric of the scatter and trade-off plot.
        points: (Δclean, Δrobust) of every non-baseline cell.
        fit: least-squares Δrobust ≈ a + b·Δclean, when the points allow one.
        fit_note: why there is no fit, when there is none.
    """

    reports: list[RunReport]
    table: PivotTable
    change: PivotTable | None = None
    relative: PivotTable | None = None
    clean: MetricSpec | None = None
    robust: MetricSpec | None = None
    points: list[DeltaPoint] = field(default_factory=list)
    fit: LinearFit | None = None
    fit_note: str | None = None

    def tables(self) -> dict[str, PivotTable]:
        """``{"absolute": ..., "change": ..., "relative": ...}`` (those that exist)."""
        tables = {"absolute": self.table, "change": self.change, "relative": self.relative}
        return {kind: table for kind, table in tables.items() if table is not None}

    def figures(self) -> dict[str, Figure]:
        """``{"tradeoff": ..., "delta_scatter": ...}`` (those the metrics and baseline allow)."""
        if self.clean is None or self.robust is None:
            return {}
        figures = {"tradeoff": tradeoff_figure(self.table, self.clean, self.robust)}
        if self.change is not None and self.points:
            figures["delta_scatter"] = delta_scatter_figure(
                self.points, self.fit, self.clean, self.robust, self.change.baseline or "")
        return figures

    def fit_sentence(self) -> str:
        """The fitted line in words, in the units of the tables."""
        if self.fit is None or self.clean is None or self.robust is None:
            return self.fit_note or "no fit"
        scale_x = 100.0 if self.clean.is_accuracy else 1.0
        scale_y = 100.0 if self.robust.is_accuracy else 1.0
        r2 = "n/a (Δ" + self.robust.label + " does not vary)" if math.isnan(self.fit.r2) \
            else f"{self.fit.r2:.4f}"
        return (f"Δ{self.robust.label} = {self.fit.intercept * scale_y:+.3f} "
                f"{self.fit.slope * scale_y / scale_x:+.4f} · Δ{self.clean.label} "
                f"(least squares over {self.fit.n} points), R² = {r2}")

    def to_markdown(self, title: str = "Comparison", figure_names: Sequence[str] = ()) -> str:
        """All tables, the fit and links to the figures ``figure_names`` (PNG file names)."""
        lines = [f"# {title}", ""]
        headings = {"absolute": "Values", "change": "Change vs baseline",
                    "relative": "Relative change vs baseline"}
        lines += ["## Grouping", "", *[f"- {note}" for note in self.table.notes], ""]
        for kind, table in self.tables().items():
            lines += [f"## {headings[kind]}", "", table.caption(), "", table.to_markdown()]
        if self.change is not None and self.clean is not None:
            lines += [f"## Δ{self.robust.label} vs Δ{self.clean.label}", "", self.fit_sentence(),
                      ""]
        lines += [f"![{name}]({name})\n" for name in figure_names]
        lines += ["## Runs", ""] + [f"- `{report.path}`" for report in self.reports]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """Tables as ``{row label: {column label: value}}`` plus the points and the fit."""
        def table_dict(table: PivotTable) -> dict[str, dict[str, float | None]]:
            return {" / ".join(row): {
                table.column_label(col, spec): _json_number(table.value(row, col, spec.label))
                for col in table.cols for spec in table.metrics} for row in table.rows}

        fit = None if self.fit is None else {
            "slope": self.fit.slope, "intercept": self.fit.intercept,
            "r2": _json_number(self.fit.r2), "n": self.fit.n}
        return {
            "rows": list(self.table.row_fields), "cols": list(self.table.col_fields),
            "metrics": {spec.label: spec.pattern for spec in self.table.metrics},
            "grouping": list(self.table.notes),
            "baseline": self.change.baseline if self.change is not None else None,
            "tables": {kind: table_dict(table) for kind, table in self.tables().items()},
            "points": [vars(point) for point in self.points],
            "fit": fit,
            "fit_note": self.fit_note,
            "reports": [str(report.path) for report in self.reports],
        }

    def write(self, out_dir: str | Path, name: str = "comparison",
              tensorboard: bool = True) -> dict[str, Path]:
        """Write ``<name>.md``, ``<name>.json``, ``<name>[_change|_relative].csv``,
        ``<name>_<figure>.png`` and (with ``tensorboard``) the figures and the markdown as
        TensorBoard events under ``<out_dir>/tensorboard/<name>``.

        Returns:
            ``{what: path}`` of every file written.
        """
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        files: dict[str, Path] = {}
        for kind, table in self.tables().items():
            suffix = "" if kind == "absolute" else f"_{kind}"
            files[f"csv_{kind}"] = out_dir / f"{name}{suffix}.csv"
            files[f"csv_{kind}"].write_text(table.to_csv(), encoding="utf-8")
        figures = self.figures()
        for tag, figure in figures.items():
            files[f"png_{tag}"] = out_dir / f"{name}_{tag}.png"
            figure.savefig(files[f"png_{tag}"], dpi=120)
        markdown = self.to_markdown(title=name, figure_names=[
            files[f"png_{tag}"].name for tag in figures])
        files["markdown"] = out_dir / f"{name}.md"
        files["markdown"].write_text(markdown, encoding="utf-8")
        files["json"] = out_dir / f"{name}.json"
        files["json"].write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            files["tensorboard"] = out_dir / "tensorboard" / name
            with SummaryWriter(log_dir=str(files["tensorboard"])) as writer:
                for tag, figure in figures.items():
                    writer.add_figure(f"compare/{tag}", figure, global_step=0, close=False)
                writer.add_text("compare/tables", markdown, global_step=0)
        return files


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else value


def compare(
    reports: Sequence[str | Path | RunReport],
    rows: Sequence[str],
    metrics: Sequence[str | MetricSpec],
    cols: Sequence[str] = (),
    baseline: str | None = None,
    clean: str | None = None,
    robust: str | None = None,
    fill_missing: str | None = None,
) -> Comparison:
    """Group runs and build every table, the ΔRA-vs-ΔSA points and their fit.

    Args:
        reports: report files, folders to search for them, or loaded reports.
        rows: fields whose values make the rows (e.g. ``["method"]``).
        metrics: metric specs ``[label=]name-or-pattern``.
        cols: fields whose values make the column groups (e.g. ``["dataset", "model.k"]``).
        baseline: the row label (values joined by ``" / "``) the changes are relative to.
        clean: label of the clean metric (x of the scatter); default the first metric.
        robust: label of the robust metric (y of the scatter); default the second metric.
        fill_missing: the value of a field a report lacks; ``None`` makes that an error.

    Raises:
        ComparisonError: for a missing field, metric or baseline, naming what is available.
    """
    loaded = [r for r in reports if isinstance(r, RunReport)]
    paths = [r for r in reports if not isinstance(r, RunReport)]
    runs = loaded + (load_reports(paths) if paths else [])
    specs = [spec if isinstance(spec, MetricSpec) else MetricSpec.parse(spec) for spec in metrics]
    table = pivot(runs, rows, cols, specs, fill_missing=fill_missing)
    by_label = {spec.label: spec for spec in specs}
    clean_spec = _pick(by_label, clean, specs, 0, "clean")
    robust_spec = _pick(by_label, robust, specs, 1, "robust")
    split = [spec for spec in (clean_spec, robust_spec)
             if spec is not None and spec.label in table.split_metrics]
    for spec, given in ((clean_spec, clean), (robust_spec, robust)):
        if spec in split and given is not None:
            raise ComparisonError(
                f"the metric {spec.label!r} of the ΔRA-vs-ΔSA fit matches several threat "
                f"models, split into {table.split_metrics[spec.label]}; narrow its pattern to "
                "one budget (e.g. robust_acc/pgd*_eps0.03137)")
    comparison = Comparison(reports=runs, table=table, clean=clean_spec, robust=robust_spec)
    if split:
        comparison.clean = comparison.robust = None
    if baseline is None:
        comparison.fit_note = "no baseline row given, so no changes and no fit"
        return comparison
    comparison.change = change_table(table, baseline)
    comparison.relative = change_table(table, baseline, relative=True)
    if split:
        comparison.fit_note = (f"no fit: {', '.join(repr(s.label) for s in split)} matches several "
                               "threat models; give --clean / --robust metrics of one budget each")
        return comparison
    if clean_spec is None or robust_spec is None:
        comparison.fit_note = "the ΔRA-vs-ΔSA fit needs two metrics (clean and robust)"
        return comparison
    comparison.points = delta_points(comparison.change, clean_spec, robust_spec)
    try:
        comparison.fit = least_squares([p.dx for p in comparison.points],
                                       [p.dy for p in comparison.points])
    except ComparisonError as error:
        comparison.fit_note = f"no fit: {error}"
    return comparison


def _pick(by_label: dict[str, MetricSpec], label: str | None, specs: list[MetricSpec],
          position: int, role: str) -> MetricSpec | None:
    if label is None:
        return specs[position] if len(specs) > position else None
    if label not in by_label:
        raise ComparisonError(f"the {role} metric {label!r} is not among the metric labels "
                              f"{list(by_label)}")
    return by_label[label]
