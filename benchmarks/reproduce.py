"""Reproduction suite: each seed paper's headline direction, one command per paper and scale.

    python benchmarks/reproduce.py --paper twins --scale cpu
    python benchmarks/reproduce.py --paper rift --scale smoke --results-dir /tmp/results

Each paper is a fixed set of ``lit-robust`` runs of the shipped configs (:mod:`reproduce_plans`),
driven through the CLI (``lit_robust.main.cli``); a scale changes only sizes (images, epochs,
attack steps and iterations, α grid), never a method's hyperparameters. The runs'
``report.json`` files go through the comparison tool (:mod:`lit_robust.analysis`), and the
suite writes ``<results-dir>/reproduce_<paper>_<scale>.md`` and ``.json``: our numbers with the
standard error of each accuracy from the test-set size, the paper's numbers for the closest
setting, and one verdict per claimed direction (see :func:`verdict`).

Scales: ``smoke`` (about a minute on a CPU: checks the pipeline, not the claims), ``cpu``
(under an hour on 2 cores), ``gpu`` (under 8 minutes per paper on one H200). A paper whose
methods or configs have not landed is written as skipped, with what is missing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))  # reproduce_plans beside this file

from reproduce_plans import (  # noqa: E402
    PAPERS,
    PLANS,
    REPO,
    SCALES,
    Paper,
    Run,
    missing_pieces,
)

__all__ = ["PAPERS", "SCALES", "main", "reproduce", "standard_error", "verdict"]


def verdict(delta: float, se: float, expected: str, tolerance: float = 0.0) -> str:
    """One-line verdict from our change ``delta`` and its standard error ``se`` (points).

    ``up``: reproduced when delta > 2·se, not reproduced when delta < −2·se, else within
    noise. ``kept``: reproduced when delta ≥ −tolerance, within noise when
    delta ≥ −tolerance − 2·se, else not reproduced.
    """
    if expected == "up":
        if delta > 2 * se:
            return "reproduced"
        return "not reproduced" if delta < -2 * se else "within noise"
    if delta >= -tolerance:
        return "reproduced"
    return "within noise" if delta >= -tolerance - 2 * se else "not reproduced"


def standard_error(accuracy: float, images: int) -> float:
    """Binomial standard error of an accuracy (fraction) on ``images`` test images."""
    return math.sqrt(accuracy * (1 - accuracy) / images)


def run_all(runs: Sequence[Run], work: Path) -> dict[str, dict[str, float]]:
    """Run every ``lit-robust`` call in this process (a fresh folder each); returns each run's
    wall seconds and number of test images."""
    from lit_robust.main import cli

    facts = {}
    for run in runs:
        shutil.rmtree(work / run.name, ignore_errors=True)
        start = time.perf_counter()
        with mock.patch.object(sys, "argv", ["lit-robust"]):  # this script's own arguments
            result = cli(list(run.args))
        test_set = getattr(result.datamodule, "test_dataset", None)
        facts[run.name] = {"seconds": round(time.perf_counter() - start, 1),
                           "test_images": len(test_set) if test_set is not None else 0}
    return facts


def direction_rows(paper: Paper, values: dict[str, dict[str, float]], images: int,
                   measured: dict[str, dict[str, int]] | None = None) -> list[dict]:
    """Each claim with our change, its standard error and the verdict (points).

    The standard error of a metric measured on fewer images than the test set (a
    certification's subset) uses that number, ``measured[run][metric]``
    (:func:`measured_images`), not ``images``.
    """
    rows = []
    for claim in paper.claims:
        ours, base = values[claim.ours][claim.metric], values[claim.baseline][claim.metric]
        delta = 100 * (ours - base)
        n_ours, n_base = ((measured or {}).get(run, {}).get(claim.metric, images)
                          for run in (claim.ours, claim.baseline))
        se = 100 * math.hypot(standard_error(ours, n_ours), standard_error(base, n_base))
        rows.append({**asdict(claim), "ours_value": ours, "baseline_value": base,
                     "delta_points": round(delta, 2), "se_points": round(se, 2),
                     "verdict": verdict(delta, se, claim.expected, claim.tolerance_points)})
    return rows


def measured_images(metrics: dict[str, float], metric: str) -> int | None:
    """How many images a certification metric (``smoothing_<...>/<name>``) was measured on: its
    ``num_images``, which may be fewer than the test set; ``None`` for other metrics."""
    prefix = metric.split("/", 1)[0]
    count = metrics.get(f"{prefix}/num_images") if prefix.startswith("smoothing_") else None
    return None if count is None else int(count)


def reproduce(paper_name: str, scale: str, results_dir: Path, work: Path,
              models: Path) -> dict:
    """Run one paper at one scale and write ``reproduce_<paper>_<scale>.{md,json}``."""
    from lit_robust.analysis import compare

    command = f"python benchmarks/reproduce.py --paper {paper_name} --scale {scale}"
    result: dict = {"paper": paper_name, "scale": scale, "command": command,
                    "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    missing = missing_pieces(paper_name)
    if missing:
        result.update(status="skipped", message=(
            f"skipped: {paper_name} needs {', '.join(missing)}, which lit_robust does not have "
            "yet; no numbers are reported"))
        return _write(result, results_dir)
    paper = PLANS[paper_name](scale, work, models)
    start = time.perf_counter()
    facts = run_all(paper.runs, work)
    compared = [run.name for run in paper.runs if run.reported]
    comparison = compare([work / name / "report.json" for name in compared], rows=["run"],
                         metrics=paper.metrics, baseline=paper.baseline)
    comparison.write(work / "comparison", name=f"reproduce_{paper_name}_{scale}")
    table = comparison.to_dict()["tables"]["absolute"]
    values = {run: {col.split(" · ")[-1]: value for col, value in cols.items()}
              for run, cols in table.items()}
    images = {facts[name]["test_images"] for name in compared}
    if len(images) != 1:
        raise RuntimeError(f"runs were tested on different numbers of images: {facts}")
    n = images.pop()
    reference = comparison.reports[0]
    measured = {report.path.parent.name: {
        spec.label: count for spec in comparison.table.metrics
        if (count := measured_images(report.metrics, report.metric_name(spec))) is not None}
        for report in comparison.reports}
    result.update(
        status="ran", title=paper.title, setting=paper.setting, test_images=n,
        metrics={spec.label: reference.metric_name(spec) for spec in comparison.table.metrics},
        seconds=round(time.perf_counter() - start, 1), runs=facts,
        ours={run: {metric: round(100 * value, 2) for metric, value in metrics.items()}
              for run, metrics in values.items()},
        standard_error={run: {metric: round(100 * standard_error(
                                  value, measured[run].get(metric, n)), 2)
                              for metric, value in metrics.items()}
                        for run, metrics in values.items()},
        paper_numbers={"setting": paper.paper_setting, "values": paper.paper_values},
        directions=direction_rows(paper, values, n, measured),
        failed_sanity_checks={
            report.path.parent.name: sorted(key for key, value in report.metrics.items()
                                            if key.startswith("sanity/") and value != 1.0)
            for report in comparison.reports},
        comparison_markdown=comparison.change.to_markdown(),
        fit=comparison.fit_sentence(),
    )
    return _write(result, results_dir)


def to_markdown(result: dict) -> str:
    """The result file's markdown."""
    lines = [f"# Reproduction: {result.get('title', result['paper'])}, {result['scale']} scale",
             "", f"`{result['command']}` ({result['date']})", ""]
    if result["status"] == "skipped":
        message = result["message"]
        return "\n".join(lines + [message[0].upper() + message[1:] + ".", ""])
    if result["scale"] == "smoke":
        lines += ["**Smoke scale: a few images and steps, to check the pipeline end to end; "
                  "the verdicts say nothing about the paper.**", ""]
    n = result["test_images"]
    metrics = list(next(iter(result["ours"].values())))
    names = ", ".join(f"{label} = `{name}`" for label, name in result["metrics"].items())
    lines += [f"Setting: {result['setting']}. {n} test images; wall time "
              f"{result['seconds']:.0f} s. Metrics: {names}.", "",
              "## Our numbers (%, ± one standard error √(p(1−p)/n))", "",
              "| run | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for run, values in result["ours"].items():
        cells = [f"{values[m]:.2f} ± {result['standard_error'][run][m]:.2f}" for m in metrics]
        lines.append(f"| {run} | " + " | ".join(cells) + " |")
    failed = {run: checks for run, checks in result["failed_sanity_checks"].items() if checks}
    if failed:
        lines += ["", "**Failed sanity checks** (lit_robust.evaluation.sanity): " + "; ".join(
            f"{run}: {', '.join(checks)}" for run, checks in failed.items()) + "."]
    paper = result["paper_numbers"]
    lines += ["", "## The paper's numbers", "", f"Closest setting: {paper['setting']}.", ""]
    if paper["values"]:
        paper_metrics = list(next(iter(paper["values"].values())))
        lines += ["| run | " + " | ".join(paper_metrics) + " |",
                  "|---|" + "---|" * len(paper_metrics)]
        lines += [f"| {run} | " + " | ".join(f"{v[m]:.2f}" for m in paper_metrics) + " |"
                  for run, v in paper["values"].items()]
        lines.append("")
    lines += ["## Directions", "",
              "Δ in points; SE of a difference √(SE₁² + SE₂²) (both runs are tested on the same "
              "images, so this overstates the noise of the paired difference). 'up': reproduced "
              "when Δ > 2·SE, not reproduced when Δ < −2·SE, else within noise; 'kept': "
              "reproduced when Δ ≥ −tolerance, within noise down to −tolerance − 2·SE.", "",
              "| claim | ours: Δ ± SE | paper: Δ | verdict |", "|---|---|---|---|"]
    for row in result["directions"]:
        paper_delta = "–" if row["paper_delta"] is None else f"{row['paper_delta']:+.2f}"
        lines.append(f"| {row['text']} | {row['delta_points']:+.2f} ± {row['se_points']:.2f} | "
                     f"{paper_delta} | {row['verdict']} |")
    lines += ["", f"## Change vs {result['directions'][0]['baseline']} (comparison tool)", "",
              "Percentage points.", "", result["comparison_markdown"],
              f"{result['fit']}.", "", "## Runs", "", "| run | test images | seconds |",
              "|---|---|---|"]
    lines += [f"| {name} | {fact['test_images']} | {fact['seconds']:.0f} |"
              for name, fact in result["runs"].items()]
    return "\n".join(lines) + "\n"


def _write(result: dict, results_dir: Path) -> dict:
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = results_dir / f"reproduce_{result['paper']}_{result['scale']}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    stem.with_suffix(".md").write_text(to_markdown(result), encoding="utf-8")
    return result


def main(argv: Sequence[str] | None = None) -> dict:
    """Parse the arguments and run one paper at one scale."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paper", choices=PAPERS, required=True)
    parser.add_argument("--scale", choices=SCALES, required=True)
    parser.add_argument("--results-dir", type=Path, default=REPO / "benchmarks" / "results",
                        help="where the result files go (default: %(default)s)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="logs and reports of the runs (default: logs/reproduce/"
                             "<paper>_<scale>)")
    args = parser.parse_args(argv)
    data = Path(os.environ.setdefault("LIT_ROBUST_DATA", str(REPO.parent / "shared" / "data")))
    models = Path(os.environ.get("LIT_ROBUST_MODELS", data.parent / "models"))
    work = args.work_dir or REPO / "logs" / "reproduce" / f"{args.paper}_{args.scale}"
    result = reproduce(args.paper, args.scale, args.results_dir, work.resolve(),
                       models.resolve())
    print(to_markdown(result))
    return result


if __name__ == "__main__":
    main()
