"""Reproduction suite: each seed paper's headline direction, one command per paper and scale.

    python benchmarks/reproduce.py --paper twins --scale cpu
    python benchmarks/reproduce.py --paper rift --scale smoke --results-dir /tmp/results

Each paper is a fixed set of ``lit-robust`` runs of the shipped configs (:mod:`reproduce_plans`),
driven through the CLI (``lit_robust.main.cli``); a scale changes only sizes (images, epochs,
attack steps and iterations, α grid), never a method's hyperparameters. The runs'
``report.json`` files go through the comparison tool (:mod:`lit_robust.analysis`), and the
suite writes ``<results-dir>/reproduce_<paper>_<scale>.md`` and ``.json``: our numbers with the
standard error of each accuracy from the test-set size, the paper's numbers for the closest
setting, and one verdict per claimed direction, decided image by image from the per-image
results the reports keep (exact McNemar test or paired bootstrap, with the paired confidence
interval of each difference: :mod:`lit_robust.analysis.paired`).

The baseline of every claim runs first, and a claim is judged only when its baseline learns:
clean accuracy on the held-out test images well above chance
(:mod:`lit_robust.analysis.learning`). Otherwise the claim is "uninformative at this scale",
with the reason, and the runs only it needs are not run; when no claim is left, the paper's
result says so and nothing else runs. The ``smoke`` scale, which checks the pipeline and not
the claims, records the check without stopping.

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

CONFIDENCE = 0.95  # of the paired and unpaired intervals of each difference
ALPHA = 0.05  # level of the paired test of an "up" claim


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
    wall seconds, number of test images and number of classes."""
    from lit_robust.main import cli

    facts = {}
    for run in runs:
        shutil.rmtree(work / run.name, ignore_errors=True)
        start = time.perf_counter()
        with mock.patch.object(sys, "argv", ["lit-robust"]):  # this script's own arguments
            result = cli(list(run.args))
        test_set = getattr(result.datamodule, "test_dataset", None)
        facts[run.name] = {"seconds": round(time.perf_counter() - start, 1),
                           "test_images": len(test_set) if test_set is not None else 0,
                           "classes": result.datamodule.num_classes}
    return facts


def needed(runs: Sequence[Run], names: Sequence[str]) -> list[Run]:
    """The runs ``names`` and every run they need, in the plan's order."""
    by_name = {run.name: run for run in runs}
    wanted: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name not in wanted:
            wanted.add(name)
            pending.extend(by_name[name].needs)
    return [run for run in runs if run.name in wanted]


def learning_checks(paper: Paper, work: Path, facts: dict[str, dict]) -> dict[str, dict]:
    """Whether each claim's baseline learns (:func:`lit_robust.analysis.learning.
    check_learning` on its clean accuracy over its held-out test images)."""
    from lit_robust.analysis.learning import check_learning

    checks = {}
    for name in dict.fromkeys(claim.baseline for claim in paper.claims):
        report = json.loads((work / name / "report.json").read_text(encoding="utf-8"))
        images = facts[name]["test_images"]
        correct = round(report["metrics"]["clean_acc"] * images)
        checks[name] = check_learning(correct, images, facts[name]["classes"],
                                      what=f"the baseline {name}").to_dict()
    return checks


def direction_rows(paper: Paper, values: dict[str, dict[str, float]], images: int,
                   per_image: dict[str, dict], metric_names: dict[str, dict[str, str]],
                   checks: dict[str, dict], judged: dict[str, bool],
                   measured: dict[str, dict[str, int]] | None = None) -> list[dict]:
    """Each claim with our change, its paired interval and test, and the verdict (points).

    The unpaired standard error of a metric measured on fewer images than the test set (a
    certification's subset) uses that number, ``measured[run][metric]``
    (:func:`measured_images`), not ``images``.

    A claim whose runs both kept per-image results is decided by the paired test
    (:func:`lit_robust.analysis.paired.paired_verdict`); otherwise by :func:`verdict` on the
    unpaired standard error. A claim whose baseline is not ``judged`` (it does not learn) is
    uninformative.
    """
    from lit_robust.analysis.learning import UNINFORMATIVE
    from lit_robust.analysis.paired import paired_difference, paired_verdict

    rows = []
    for claim in paper.claims:
        row = {**asdict(claim), "ours_value": None, "baseline_value": None,
               "delta_points": None, "se_points": None, "paired_ci_points": None,
               "unpaired_ci_points": None, "test": None, "p_value": None,
               "only_ours": None, "only_baseline": None}
        if not judged[claim.baseline]:
            rows.append({**row, "verdict": UNINFORMATIVE,
                         "reason": checks[claim.baseline]["reason"]})
            continue
        ours, base = values[claim.ours][claim.metric], values[claim.baseline][claim.metric]
        delta = 100 * (ours - base)
        n_ours, n_base = ((measured or {}).get(run, {}).get(claim.metric, images)
                          for run in (claim.ours, claim.baseline))
        se = 100 * math.hypot(standard_error(ours, n_ours), standard_error(base, n_base))
        row.update(ours_value=ours, baseline_value=base, delta_points=round(delta, 2),
                   se_points=round(se, 2))
        ours_results = per_image[claim.ours].get(metric_names[claim.ours][claim.metric])
        base_results = per_image[claim.baseline].get(metric_names[claim.baseline][claim.metric])
        if ours_results is None or base_results is None:
            rows.append({**row, "test": "unpaired: no per-image results", "reason": None,
                         "verdict": verdict(delta, se, claim.expected, claim.tolerance_points)})
            continue
        paired = paired_difference(ours_results, base_results, confidence=CONFIDENCE)
        row.update(paired_ci_points=[round(100 * v, 2) for v in paired.interval],
                   unpaired_ci_points=[round(100 * v, 2) for v in paired.unpaired_interval],
                   test=paired.test, p_value=float(f"{paired.p_value:.4g}"),
                   only_ours=paired.only_ours, only_baseline=paired.only_baseline)
        rows.append({**row, "reason": None, "verdict": paired_verdict(
            paired, claim.expected, claim.tolerance_points / 100, alpha=ALPHA)})
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
    from lit_robust.analysis.paired import load_per_image
    from lit_robust.evaluation import per_image as per_image_format

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
    baselines = list(dict.fromkeys(claim.baseline for claim in paper.claims))
    facts = run_all(needed(paper.runs, baselines), work)
    checks = learning_checks(paper, work, facts)
    enforced = scale != "smoke"  # the smoke scale checks the pipeline, not the claims
    result.update(title=paper.title, setting=paper.setting, learning_check=checks,
                  learning_check_enforced=enforced)
    judged = {name: check["learns"] or not enforced for name, check in checks.items()}
    informative = [claim for claim in paper.claims if judged[claim.baseline]]
    if not informative:
        from lit_robust.analysis.learning import UNINFORMATIVE

        result.update(status="uninformative", seconds=round(time.perf_counter() - start, 1),
                      runs=facts, message=f"{UNINFORMATIVE}; no claim is judged: " + "; ".join(
                          check["reason"].removeprefix(f"{UNINFORMATIVE}: ")
                          for check in checks.values()))
        return _write(result, results_dir)
    # every reported run, but those only uninformative claims compare (and what only they need)
    judged_runs = {name for claim in informative for name in (claim.ours, claim.baseline)}
    skipped = {claim.ours for claim in paper.claims} - judged_runs - set(baselines)
    wanted = [run.name for run in paper.runs if run.reported and run.name not in skipped]
    facts.update(run_all([run for run in needed(paper.runs, wanted) if run.name not in facts],
                         work))
    compared = [run.name for run in paper.runs if run.reported and run.name in facts]
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
    reports = {report.path.parent.name: report for report in comparison.reports}
    metric_names = {run: {spec.label: report.metric_name(spec)
                          for spec in comparison.table.metrics}
                    for run, report in reports.items()}
    per_image = {run: load_per_image(report.path) for run, report in reports.items()}
    measured = {run: {label: count for label, name in names.items()
                      if (count := measured_images(reports[run].metrics, name)) is not None}
                for run, names in metric_names.items()}
    result.update(
        status="ran", test_images=n,
        metrics={spec.label: reference.metric_name(spec) for spec in comparison.table.metrics},
        seconds=round(time.perf_counter() - start, 1), runs=facts,
        ours={run: {metric: round(100 * value, 2) for metric, value in metrics.items()}
              for run, metrics in values.items()},
        standard_error={run: {metric: round(100 * standard_error(
                                  value, measured[run].get(metric, n)), 2)
                              for metric, value in metrics.items()}
                        for run, metrics in values.items()},
        paper_numbers={"setting": paper.paper_setting, "values": paper.paper_values},
        directions=direction_rows(paper, values, n, per_image, metric_names, checks, judged,
                                  measured),
        per_image={run: per_image_format.encode(results) for run, results in per_image.items()},
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
    if result["status"] == "uninformative":
        message = result["message"]
        return "\n".join(lines + [f"Setting: {result['setting']}.", "",
                                   f"**{message[0].upper() + message[1:]}.**", "",
                                   *_run_lines(result["runs"])]) + "\n"
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
    level = f"{100 * CONFIDENCE:g}%"
    lines += ["## Directions", "",
              f"Δ in points, on the same {n} test images for both runs, with its paired {level} "
              "interval (bootstrap over the images) beside the unpaired one (Δ ± 1.96·√(SE₁² + "
              "SE₂²), which ignores that the images are shared). 'up' claims are decided by the "
              f"paired test (exact McNemar on the discordant images; paired bootstrap for "
              f"per-image fractions) at level {ALPHA:g}: reproduced when it rejects \"no "
              "difference\" with Δ > 0, not reproduced when it rejects with Δ < 0, else "
              "within noise. 'kept' claims (not lower by more than a tolerance): reproduced "
              "when the paired interval's lower end is ≥ −tolerance, not reproduced when its "
              "upper end is < −tolerance, else within noise. b / c: images only ours / only "
              "the baseline got right.", "",
              f"| claim | ours: Δ [paired {level}] | unpaired {level} | test: p (b / c) | "
              "paper: Δ | verdict |", "|---|---|---|---|---|---|"]
    for row in result["directions"]:
        paper_delta = "–" if row["paper_delta"] is None else f"{row['paper_delta']:+.2f}"
        lines.append(f"| {row['text']} | {_delta_cell(row)} | {_interval(row, 'unpaired')} | "
                     f"{_test_cell(row)} | {paper_delta} | {row['verdict']} |")
    reasons = {row["reason"] for row in result["directions"] if row.get("reason")}
    lines += ["", "## Does the baseline learn?", "",
              "A claim is judged only when its baseline's clean accuracy on the held-out test "
              "images is well above chance (lit_robust.analysis.learning)"
              + ("." if result["learning_check_enforced"] else
                 "; the smoke scale records this check without enforcing it."), ""]
    lines += [f"- {check['reason']}." for check in result["learning_check"].values()]
    if reasons:
        lines += ["", "Claims whose baseline does not learn are marked uninformative; the "
                  "runs only they need were not run."]
    lines += ["", f"## Change vs {result['directions'][0]['baseline']} (comparison tool)", "",
              "Percentage points.", "", result["comparison_markdown"],
              f"{result['fit']}.", "", *_run_lines(result["runs"])]
    return "\n".join(lines) + "\n"


def _interval(row: dict, kind: str) -> str:
    interval = row[f"{kind}_ci_points"]
    return "–" if interval is None else f"[{interval[0]:+.2f}, {interval[1]:+.2f}]"


def _delta_cell(row: dict) -> str:
    if row["delta_points"] is None:
        return "–"
    if row["paired_ci_points"] is None:
        return f"{row['delta_points']:+.2f} ± {row['se_points']:.2f} (SE, unpaired)"
    return f"{row['delta_points']:+.2f} {_interval(row, 'paired')}"


def _test_cell(row: dict) -> str:
    if row["p_value"] is None:
        return row["test"] or "–"
    counts = "" if row["only_ours"] is None else f" ({row['only_ours']} / {row['only_baseline']})"
    return f"{row['test']}: p = {row['p_value']:.3g}{counts}"


def _run_lines(runs: dict[str, dict]) -> list[str]:
    lines = ["## Runs", "", "| run | test images | seconds |", "|---|---|---|"]
    return lines + [f"| {name} | {fact['test_images']} | {fact['seconds']:.0f} |"
                    for name, fact in runs.items()]


def _write(result: dict, results_dir: Path) -> dict:
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = results_dir / f"reproduce_{result['paper']}_{result['scale']}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    stem.with_suffix(".md").write_text(to_markdown(result), encoding="utf-8")
    return result


def estimate(paper: str, scale: str) -> str:
    """The CPU time of a paper's runs from their counted work (benchmarks/device/plans.py)
    and the CPU's measured throughput (benchmarks/device/calibration_cpu.json)."""
    sys.path.insert(0, str(REPO / "benchmarks" / "device"))
    from plans import DATA_COUNTS, PAPER_WORK
    from work import cpu_rates, total

    if paper not in PAPER_WORK:
        return f"no counted work for {paper}; estimates exist for {', '.join(PAPER_WORK)}"
    works = PAPER_WORK[paper](scale, DATA_COUNTS)
    rates = cpu_rates()
    lines = [f"{paper} at scale {scale}: estimated from counted work on this CPU "
             f"(benchmarks/device/calibration_cpu.json, {rates['date']}):"]
    lines += [f"  run {index}: {work.forward:,.0f} forward + {work.backward:,.0f} forward-backward "
              f"passes: {work.seconds(rates) / 60:.1f} min"
              for index, work in enumerate(works, 1)]
    lines.append(f"  total: {total(works).seconds(rates) / 60:.1f} min")
    return "\n".join(lines)


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
    parser.add_argument("--estimate", action="store_true",
                        help="print the time estimated from the counted work and this CPU's "
                             "measured throughput (benchmarks/device/) and exit")
    args = parser.parse_args(argv)
    if args.estimate:
        text = estimate(args.paper, args.scale)
        print(text)
        return {"estimate": text}
    data = Path(os.environ.setdefault("LIT_ROBUST_DATA", str(REPO.parent / "shared" / "data")))
    models = Path(os.environ.get("LIT_ROBUST_MODELS", data.parent / "models"))
    work = args.work_dir or REPO / "logs" / "reproduce" / f"{args.paper}_{args.scale}"
    result = reproduce(args.paper, args.scale, args.results_dir, work.resolve(),
                       models.resolve())
    print(to_markdown(result))
    return result


if __name__ == "__main__":
    main()
