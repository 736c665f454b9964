"""The ``lit-robust-compare`` command (also ``python -m lit_robust.analysis``).

Examples::

    lit-robust-compare logs/ --rows method --cols dataset \\
        --metrics clean=clean_acc "pgd=robust_acc/pgd*" --baseline AdversarialTraining \\
        --out results/ --name gtsrb
    lit-robust-compare runs/*/report.json --rows run --cols model.k \\
        --metrics clean_acc "robust_acc/autoattack*"
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lit_robust.analysis.compare import compare
from lit_robust.analysis.reports import ComparisonError


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    parser = argparse.ArgumentParser(
        prog="lit-robust-compare",
        description="Lay a set of report.json files out as tables (absolute values and the "
                    "change vs a baseline row), fit ΔRA vs ΔSA and plot the clean-vs-robust "
                    "trade-off; writes markdown, JSON, CSV, PNG and TensorBoard figures.",
    )
    parser.add_argument("reports", nargs="+",
                        help="report.json files, or folders searched recursively for them")
    parser.add_argument("--rows", nargs="+", required=True,
                        help="fields whose values make the rows: 'run' (the report's folder), "
                             "metadata keys (method, dataset, checkpoint), config paths "
                             "(model.k, config.attack.init_args.eps)")
    parser.add_argument("--cols", nargs="*", default=[],
                        help="fields whose values make the column groups")
    parser.add_argument("--metrics", nargs="+", required=True,
                        help="metric columns as [label=]name; name may be a shell pattern that "
                             "matches exactly one metric per report, e.g. 'pgd=robust_acc/pgd*'")
    parser.add_argument("--baseline",
                        help="row label (row values joined by ' / ') the changes are taken vs")
    parser.add_argument("--clean", help="label of the clean metric (default: the first)")
    parser.add_argument("--robust", help="label of the robust metric (default: the second)")
    parser.add_argument("--fill-missing", metavar="TEXT",
                        help="value of a field a report lacks (e.g. '-' for the k of a method "
                             "without one); by default a missing field is an error")
    parser.add_argument("--out", default="comparison", help="output folder (default: %(default)s)")
    parser.add_argument("--name", default="comparison",
                        help="stem of the output files (default: %(default)s)")
    parser.add_argument("--no-tensorboard", action="store_true",
                        help="do not write TensorBoard events")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (2 for unusable input, with the reason)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        comparison = compare(args.reports, rows=args.rows, cols=args.cols, metrics=args.metrics,
                             baseline=args.baseline, clean=args.clean, robust=args.robust,
                             fill_missing=args.fill_missing)
        files = comparison.write(args.out, name=args.name, tensorboard=not args.no_tensorboard)
    except ComparisonError as error:
        print(f"lit-robust-compare: error: {error}", file=sys.stderr)
        return 2
    print("\n".join(comparison.table.notes))
    for table in comparison.tables().values():
        print(table.caption())
        print(table.to_markdown())
    if comparison.change is not None:
        print(comparison.fit_sentence())
    print(f"written: {', '.join(str(path) for path in files.values())}")
    return 0
