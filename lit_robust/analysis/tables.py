"""Pivot tables of chosen metrics over runs grouped by fields, and their change vs a baseline.

Rows are the distinct values of the row fields (e.g. ``method``), columns the distinct values
of the column fields (e.g. ``dataset`` or ``model.k``) times the chosen metrics, in the order
they first appear in the reports; several runs in one cell are averaged. This is the layout
of CARTL's Tables 2–4 (method × k × dataset, clean / robust) and of the transfer study's
Tables 4–5 (absolute values, and absolute or relative change vs a baseline source).

A column never mixes test images or threat models, since its cells are averaged and
compared with the baseline row: when the runs of one column group were tested on different
images (dataset, subset rule, count), the test data becomes a column field of its own
(``test_data``), and a metric pattern that matches several budgets (``robust_acc/pgd*`` over
ε = 8/255 and 1/255) becomes one column per threat model. :attr:`PivotTable.notes` says
what was grouped.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from lit_robust.analysis.reports import ComparisonError, MetricSpec, RunReport, threat_model

Key = tuple[str, ...]
TableKind = Literal["absolute", "change", "relative"]


@dataclass
class PivotTable:
    """Metric values by (row, column, metric label).

    Args:
        row_fields: the fields whose values make the rows.
        col_fields: the fields whose values make the column groups (may be empty).
        metrics: the metric columns of every column group.
        rows: the row keys, in order.
        cols: the column-group keys, in order.
        values: ``{(row, col, metric label): value}``; absent cells are missing.
        counts: how many runs each cell averages.
        kind: absolute values, or the absolute / relative change vs ``baseline``.
        baseline: the baseline row's label for a change table.
        notes: how the runs were grouped: the test images and threat model of the columns,
            and any column field or metric split added so that none of them is mixed.
        split_metrics: ``{metric label given: [the labels it was split into]}`` for a
            metric pattern that matched several threat models.
    """

    row_fields: tuple[str, ...]
    col_fields: tuple[str, ...]
    metrics: tuple[MetricSpec, ...]
    rows: list[Key]
    cols: list[Key]
    values: dict[tuple[Key, Key, str], float]
    counts: dict[tuple[Key, Key, str], int] = field(default_factory=dict)
    kind: TableKind = "absolute"
    baseline: str | None = None
    notes: list[str] = field(default_factory=list)
    split_metrics: dict[str, list[str]] = field(default_factory=dict)

    def value(self, row: Key, col: Key, label: str) -> float:
        """The cell's value, NaN when no run fills it."""
        return self.values.get((row, col, label), math.nan)

    def column_label(self, col: Key, spec: MetricSpec) -> str:
        """``"<col value> · ... · <metric label>"``; a config field's value is written
        ``<last path segment>=<value>`` (``k=4``), a metadata field's (``GTSRB``) as it is."""
        parts = [value if _is_metadata(name) else f"{name.split('.')[-1]}={value}"
                 for name, value in zip(self.col_fields, col, strict=True)]
        return " · ".join([*parts, spec.label])

    def header(self) -> list[str]:
        """The row-field name followed by every column label."""
        return [" / ".join(self.row_fields)] + [
            self.column_label(col, spec) for col in self.cols for spec in self.metrics]

    def caption(self) -> str:
        """What the numbers are, with their units."""
        if self.kind == "absolute":
            return "Accuracies in %; a cell with several runs shows their mean and (n=runs)."
        if self.kind == "change":
            return f"Change vs {self.baseline}; accuracies in percentage points."
        return f"Relative change vs {self.baseline}, in % of the baseline's value."

    def to_markdown(self) -> str:
        """A markdown table (values formatted for reading)."""
        header = self.header()
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in self.rows:
            cells = [" / ".join(row)]
            for col in self.cols:
                for spec in self.metrics:
                    cells.append(self._formatted(row, col, spec))
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def _formatted(self, row: Key, col: Key, spec: MetricSpec) -> str:
        value = self.value(row, col, spec.label)
        if math.isnan(value):
            return "–"
        if self.kind == "relative":
            return f"{100 * value:+.1f}%"
        scaled = 100 * value if spec.is_accuracy else value
        if self.kind == "change":
            return f"{scaled:+.2f}" if spec.is_accuracy else f"{scaled:+.4g}"
        text = f"{scaled:.2f}" if spec.is_accuracy else f"{scaled:.4g}"
        count = self.counts.get((row, col, spec.label), 1)
        return text if count == 1 else f"{text} (n={count})"

    def to_csv(self) -> str:
        """CSV with the same layout and the raw values (accuracies as fractions)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([*self.row_fields,
                         *(self.column_label(c, s) for c in self.cols for s in self.metrics)])
        for row in self.rows:
            values = [self.value(row, col, spec.label)
                      for col in self.cols for spec in self.metrics]
            writer.writerow([*row, *("" if math.isnan(v) else repr(v) for v in values)])
        return buffer.getvalue()


TEST_DATA_FIELD = "test_data"


def _is_metadata(name: str) -> bool:
    return (name in ("run", "method", "dataset", "checkpoint", TEST_DATA_FIELD)
            or name.startswith("metadata."))


def field_text(value: Any) -> str:
    """A field value as the text of a row or column key."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def pivot(
    reports: Sequence[RunReport],
    rows: Sequence[str],
    cols: Sequence[str],
    metrics: Sequence[MetricSpec],
    fill_missing: str | None = None,
) -> PivotTable:
    """Group ``reports`` by the ``rows`` and ``cols`` fields and average each metric per cell,
    never across test images or threat models (see the module docstring).

    Args:
        fill_missing: the value of a field a report does not have (e.g. ``"–"`` for the ``k``
            of a method without one); ``None`` makes a missing field an error.

    Raises:
        ComparisonError: for no rows or metrics, or a report without one of the fields (unless
            ``fill_missing``) or metrics; the error names the file and what it has.
    """
    if not rows:
        raise ComparisonError("give at least one row field (e.g. --rows method)")
    if not metrics:
        raise ComparisonError("give at least one metric (e.g. --metrics clean_acc)")
    labels = [spec.label for spec in metrics]
    if len(set(labels)) != len(labels):
        raise ComparisonError(f"metric labels must be distinct, got {labels}")
    runs = [(report, tuple(_field(report, name, fill_missing) for name in rows),
             tuple(_field(report, name, fill_missing) for name in cols), report.test_data(),
             {spec.label: report.metric_name(spec) for spec in metrics}) for report in reports]
    test_data = _distinct(data for *_, data, _ in runs)
    per_column: dict[Key, set[str]] = {}
    for _, _, col, data, _ in runs:
        per_column.setdefault(col, set()).add(data)
    split_data = any(len(found) > 1 for found in per_column.values())
    threats = {spec.label: _distinct(threat_model(names[spec.label]) for *_, names in runs)
               for spec in metrics}
    columns = {spec.label: _split(spec, threats[spec.label]) for spec in metrics}
    row_keys: list[Key] = []
    col_keys: list[Key] = []
    sums: dict[tuple[Key, Key, str], list[float]] = {}
    for report, row, col, data, names in runs:
        col = (*col, data) if split_data else col
        row_keys += [row] if row not in row_keys else []
        col_keys += [col] if col not in col_keys else []
        for spec in metrics:
            value = report.metrics[names[spec.label]]
            label = columns[spec.label][threat_model(names[spec.label])].label
            if not math.isnan(value):
                sums.setdefault((row, col, label), []).append(value)
    return PivotTable(
        row_fields=tuple(rows), col_fields=(*cols, TEST_DATA_FIELD) if split_data else tuple(cols),
        metrics=tuple(column for spec in metrics for column in columns[spec.label].values()),
        rows=row_keys, cols=col_keys,
        values={key: math.fsum(vals) / len(vals) for key, vals in sums.items()},
        counts={key: len(vals) for key, vals in sums.items()},
        notes=_grouping_notes(test_data, split_data, threats),
        split_metrics={label: [column.label for column in split.values()]
                       for label, split in columns.items() if len(split) > 1},
    )


def _distinct(values: Any) -> list[str]:
    """The distinct values in the order they first appear."""
    return list(dict.fromkeys(values))


def _split(spec: MetricSpec, threats: list[str]) -> dict[str, MetricSpec]:
    """``{threat model: metric column}``: ``spec`` itself, or one column per threat model."""
    if len(threats) == 1:
        return {threats[0]: spec}
    return {threat: MetricSpec(label=f"{spec.label} [{threat or 'no budget'}]",
                               pattern=spec.pattern) for threat in threats}


def _grouping_notes(test_data: list[str], split_data: bool,
                    threats: dict[str, list[str]]) -> list[str]:
    """What a reader must know about the grouping, in sentences."""
    notes = ["Cells average only runs tested on the same images under the same threat model; "
             f"test images: {'; '.join(test_data)}."]
    if split_data:
        notes.append("The runs of a column group were tested on different images, so the test "
                     f"data is a column field ({TEST_DATA_FIELD}) of its own.")
    for label, found in threats.items():
        if len(found) > 1:
            notes.append(f"Metric '{label}' matched {len(found)} threat models "
                         f"({', '.join(t or 'no budget' for t in found)}): one column each.")
        elif found[0]:
            notes.append(f"Metric '{label}': {found[0]}.")
    return notes


def _field(report: RunReport, name: str, fill_missing: str | None) -> str:
    try:
        return field_text(report.field(name))
    except ComparisonError:
        if fill_missing is None:
            raise
        return fill_missing


def baseline_row(table: PivotTable, baseline: str) -> Key:
    """The row whose label (its values joined by ``" / "``) is ``baseline``.

    Raises:
        ComparisonError: naming the available rows.
    """
    for row in table.rows:
        if " / ".join(row) == baseline:
            return row
    available = [" / ".join(row) for row in table.rows]
    raise ComparisonError(f"baseline row {baseline!r} is not among the rows {available}")


def change_table(table: PivotTable, baseline: str, relative: bool = False) -> PivotTable:
    """Every other row's change vs the ``baseline`` row, column by column: ``v − b``, or
    ``(v − b) / |b|`` with ``relative`` (missing where ``b`` is 0 or either value is missing).
    """
    base = baseline_row(table, baseline)
    values = {}
    for row in table.rows:
        if row == base:
            continue
        for col in table.cols:
            for spec in table.metrics:
                value, reference = table.value(row, col, spec.label), table.value(
                    base, col, spec.label)
                if math.isnan(value) or math.isnan(reference) or (relative and reference == 0):
                    continue
                delta = value - reference
                values[(row, col, spec.label)] = delta / abs(reference) if relative else delta
    return PivotTable(
        row_fields=table.row_fields, col_fields=table.col_fields, metrics=table.metrics,
        rows=[row for row in table.rows if row != base], cols=list(table.cols), values=values,
        kind="relative" if relative else "change", baseline=baseline, notes=table.notes,
        split_metrics=table.split_metrics,
    )
