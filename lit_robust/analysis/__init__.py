"""Comparing runs: tables, the ΔRA-vs-ΔSA fit and the trade-off plot over report.json files.

Entry points: :func:`compare` (Python) and ``lit-robust-compare`` /
``python -m lit_robust.analysis`` (command line).
"""

from lit_robust.analysis.compare import Comparison, compare
from lit_robust.analysis.fit import DeltaPoint, LinearFit, delta_points, least_squares
from lit_robust.analysis.reports import (
    ComparisonError,
    MetricSpec,
    RunReport,
    find_report_files,
    load_reports,
)
from lit_robust.analysis.tables import PivotTable, change_table, pivot

__all__ = [
    "Comparison", "ComparisonError", "DeltaPoint", "LinearFit", "MetricSpec", "PivotTable",
    "RunReport", "change_table", "compare", "delta_points", "find_report_files",
    "least_squares", "load_reports", "pivot",
]
