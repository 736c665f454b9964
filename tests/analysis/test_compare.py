"""The comparison tool on report files written here with known numbers."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_robust.analysis import ComparisonError, MetricSpec, compare, least_squares, load_reports
from lit_robust.analysis.cli import main
from lit_robust.analysis.reports import threat_model

# (method, dataset, clean, PGD name, PGD accuracy, k)
RUNS = [
    ("AT", "GTSRB", 0.80, "robust_acc/pgd10_linf_eps0.03137", 0.40, 4),
    ("TWINS", "GTSRB", 0.84, "robust_acc/pgd10_linf_eps0.03137", 0.43, 4),
    ("TRADES", "GTSRB", 0.82, "robust_acc/pgd10x3_linf_eps0.03137", 0.44, 6),
    ("AT", "SVHN", 0.90, "robust_acc/pgd10_linf_eps0.03137", 0.50, 4),
    ("TWINS", "SVHN", 0.92, "robust_acc/pgd10_linf_eps0.03137", 0.52, 4),
    ("TRADES", "SVHN", 0.95, "robust_acc/pgd10_linf_eps0.03137", 0.53, 6),
    ("TRADES", "SVHN", 0.93, "robust_acc/pgd10_linf_eps0.03137", 0.51, 6),
]
METRICS = ["clean=clean_acc", "pgd=robust_acc/pgd10*"]


def write_reports(root: Path) -> list[Path]:
    paths = []
    for number, (method, dataset, clean, pgd_name, pgd, k) in enumerate(RUNS):
        path = root / f"run{number}" / "report.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({
            "metadata": {"method": method, "checkpoint": "last.ckpt", "dataset": dataset},
            "config": {"k": k, "attack": {"class_path": "PGDAttack",
                                          "init_args": {"eps": 0.03137}}},
            "metrics": {"clean_acc": clean, pgd_name: pgd, "sanity/robust_le_clean": 1.0,
                        "seconds": None},
        }))
        paths.append(path)
    return paths


ABSOLUTE = """\
| method | GTSRB · clean | GTSRB · pgd | SVHN · clean | SVHN · pgd |
|---|---|---|---|---|
| AT | 80.00 | 40.00 | 90.00 | 50.00 |
| TWINS | 84.00 | 43.00 | 92.00 | 52.00 |
| TRADES | 82.00 | 44.00 | 94.00 (n=2) | 52.00 (n=2) |
"""
CHANGE = """\
| method | GTSRB · clean | GTSRB · pgd | SVHN · clean | SVHN · pgd |
|---|---|---|---|---|
| TWINS | +4.00 | +3.00 | +2.00 | +2.00 |
| TRADES | +2.00 | +4.00 | +4.00 | +2.00 |
"""
RELATIVE = """\
| method | GTSRB · clean | GTSRB · pgd | SVHN · clean | SVHN · pgd |
|---|---|---|---|---|
| TWINS | +5.0% | +7.5% | +2.2% | +4.0% |
| TRADES | +2.5% | +10.0% | +4.4% | +4.0% |
"""


def test_tables_hold_the_known_numbers(tmp_path: Path) -> None:
    write_reports(tmp_path)
    comparison = compare([tmp_path], rows=["method"], cols=["dataset"], metrics=METRICS,
                         baseline="AT")
    assert comparison.table.to_markdown() == ABSOLUTE
    assert comparison.change.to_markdown() == CHANGE
    assert comparison.relative.to_markdown() == RELATIVE
    rows = list(csv.reader(comparison.table.to_csv().splitlines()))
    assert rows[0] == ["method", "GTSRB · clean", "GTSRB · pgd", "SVHN · clean", "SVHN · pgd"]
    assert rows[3][0] == "TRADES"
    assert [float(v) for v in rows[3][1:]] == pytest.approx([0.82, 0.44, 0.94, 0.52])


def test_delta_fit_has_the_hand_computed_slope_and_r2(tmp_path: Path) -> None:
    # points (Δclean, Δpgd) in points: (4, 3), (2, 4), (2, 2), (4, 2); mean (3, 2.75);
    # Sxx = 4, Sxy = -1 → slope -0.25, intercept 3.5; SS_res = 2.5, SS_tot = 2.75 → R² = 1/11
    write_reports(tmp_path)
    comparison = compare([tmp_path], rows=["method"], cols=["dataset"], metrics=METRICS,
                         baseline="AT")
    points = sorted((round(100 * p.dx, 6), round(100 * p.dy, 6)) for p in comparison.points)
    assert points == [(2, 2), (2, 4), (4, 2), (4, 3)]
    assert comparison.fit.n == 4
    assert comparison.fit.slope == pytest.approx(-0.25)
    assert comparison.fit.intercept == pytest.approx(0.035)
    assert comparison.fit.r2 == pytest.approx(1 / 11)
    assert "R² = 0.0909" in comparison.fit_sentence()


def test_least_squares_on_an_exact_line_and_constant_y() -> None:
    fit = least_squares([0.0, 1.0, 2.0], [1.0, 3.0, 5.0])
    assert (fit.slope, fit.intercept, fit.r2) == pytest.approx((2.0, 1.0, 1.0))
    assert math.isnan(least_squares([0.0, 1.0], [2.0, 2.0]).r2)
    with pytest.raises(ComparisonError, match="x values that vary"):
        least_squares([1.0, 1.0], [0.0, 2.0])


def test_config_fields_group_rows_and_columns(tmp_path: Path) -> None:
    gtsrb = write_reports(tmp_path)[:3]
    comparison = compare(gtsrb, rows=["model.k"], cols=["config.attack.init_args.eps"],
                         metrics=["clean_acc"])
    assert comparison.table.rows == [("4",), ("6",)]
    assert comparison.table.cols == [("0.03137",)]
    assert comparison.table.header() == ["model.k", "eps=0.03137 · clean_acc"]
    assert comparison.table.value(("6",), ("0.03137",), "clean_acc") == pytest.approx(0.82)
    by_run = compare([tmp_path], rows=["run"], metrics=["clean_acc"])
    assert by_run.table.rows == [(f"run{n}",) for n in range(len(RUNS))]


def test_missing_field_names_the_file_and_the_keys(tmp_path: Path) -> None:
    paths = write_reports(tmp_path)
    with pytest.raises(ComparisonError) as error:
        compare(paths, rows=["model.lam"], metrics=["clean_acc"])
    message = str(error.value)
    assert str(paths[0]) in message and "'model.lam'" in message
    assert "['checkpoint', 'dataset', 'method']" in message and "['attack', 'k']" in message


def test_fill_missing_groups_runs_without_the_field(tmp_path: Path) -> None:
    gtsrb = write_reports(tmp_path)[:3]
    document = json.loads(gtsrb[0].read_text())
    del document["config"]["k"]
    gtsrb[0].write_text(json.dumps(document))
    comparison = compare(gtsrb, rows=["method"], cols=["model.k"], metrics=["clean_acc"],
                         fill_missing="-")
    assert comparison.table.cols == [("-",), ("4",), ("6",)]
    assert comparison.table.value(("AT",), ("-",), "clean_acc") == pytest.approx(0.80)
    assert comparison.table.value(("TWINS",), ("4",), "clean_acc") == pytest.approx(0.84)


def test_missing_and_ambiguous_metrics_name_the_file_and_the_metrics(tmp_path: Path) -> None:
    paths = write_reports(tmp_path)
    with pytest.raises(ComparisonError) as error:
        compare(paths, rows=["method"], metrics=["robust_acc/autoattack*"])
    assert str(paths[0]) in str(error.value)
    assert "'robust_acc/pgd10_linf_eps0.03137'" in str(error.value)
    report = load_reports([paths[0]])[0]
    with pytest.raises(ComparisonError, match="matches several metrics"):
        report.metric(MetricSpec.parse("*"))  # clean_acc and seconds
    assert report.metric(MetricSpec.parse("robust_acc/*")) == 0.40


def test_unknown_baseline_lists_the_rows(tmp_path: Path) -> None:
    write_reports(tmp_path)
    with pytest.raises(ComparisonError, match=r"'ST' is not among the rows \['AT', 'TWINS', "):
        compare([tmp_path], rows=["method"], metrics=METRICS, baseline="ST")


def test_a_file_that_is_not_a_report_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"clean_acc": 0.5}))
    with pytest.raises(ComparisonError, match=r"not a robustness report.*\['clean_acc'\]"):
        load_reports([path])


def test_cli_writes_every_format(tmp_path: Path, capsys) -> None:
    write_reports(tmp_path / "runs")
    out = tmp_path / "out"
    status = main([str(tmp_path / "runs"), "--rows", "method", "--cols", "dataset",
                   "--metrics", *METRICS, "--baseline", "AT", "--out", str(out), "--name", "t"])
    assert status == 0
    markdown = (out / "t.md").read_text()
    assert ABSOLUTE in markdown and CHANGE in markdown and RELATIVE in markdown
    assert "![t_delta_scatter.png](t_delta_scatter.png)" in markdown
    assert {p.name for p in out.iterdir()} == {
        "t.md", "t.json", "t.csv", "t_change.csv", "t_relative.csv", "t_tradeoff.png",
        "t_delta_scatter.png", "tensorboard"}
    document = json.loads((out / "t.json").read_text())
    assert document["tables"]["change"]["TWINS"]["GTSRB · clean"] == pytest.approx(0.04)
    assert document["fit"]["r2"] == pytest.approx(1 / 11)
    events = EventAccumulator(str(out / "tensorboard" / "t"), size_guidance={"images": 0})
    events.Reload()
    assert set(events.Tags()["images"]) == {"compare/tradeoff", "compare/delta_scatter"}
    assert "TRADES" in capsys.readouterr().out


def test_cli_error_exits_2_with_the_reason(tmp_path: Path, capsys) -> None:
    write_reports(tmp_path)
    status = main([str(tmp_path), "--rows", "method", "--metrics", "clean_acc",
                   "--baseline", "nope", "--out", str(tmp_path / "out")])
    assert status == 2
    assert "baseline row 'nope' is not among the rows" in capsys.readouterr().err


def test_python_m_entry(tmp_path: Path) -> None:
    write_reports(tmp_path / "runs")
    result = subprocess.run(
        [sys.executable, "-m", "lit_robust.analysis", str(tmp_path / "runs"), "--rows", "method",
         "--metrics", "clean_acc", "--out", str(tmp_path / "out"), "--no-tensorboard"],
        capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "| TRADES | 82.00 | 94.00 (n=2) |" in result.stdout  # GTSRB, SVHN: never averaged
    assert "so the test data is a column field (test_data) of its own" in result.stdout
    assert (tmp_path / "out" / "comparison.md").is_file()


def _report(path: Path, dataset: str, subset: str, metrics: dict[str, float],
            method: str = "AT") -> Path:
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({
        "metadata": {"method": method, "dataset": f"{dataset}DataModule"},
        "provenance": {"test_data": {"dataset": dataset, "subset_rule": subset,
                                     "test_images": 100, "indices": None}},
        "config": {}, "metrics": metrics}))
    return path


def test_runs_on_other_datasets_or_test_subsets_are_never_averaged(tmp_path: Path) -> None:
    """`--rows method` used to average a CIFAR-10 report and a GTSRB one into one cell."""
    whole = "the whole test split"
    paths = [
        _report(tmp_path / "a" / "report.json", "CIFAR-10", whole, {"clean_acc": 0.8}),
        _report(tmp_path / "b" / "report.json", "GTSRB", whole, {"clean_acc": 0.4}),
        _report(tmp_path / "c" / "report.json", "GTSRB", "the first 100 test images",
                {"clean_acc": 0.6}),
        _report(tmp_path / "d" / "report.json", "CIFAR-10", whole, {"clean_acc": 0.7}),
    ]
    table = compare(paths, rows=["method"], metrics=["clean_acc"]).table
    assert table.col_fields == ("test_data",)
    assert table.cols == [("CIFAR-10: the whole test split, 100 images",),
                          ("GTSRB: the whole test split, 100 images",),
                          ("GTSRB: the first 100 test images, 100 images",)]
    assert [table.value(("AT",), col, "clean_acc") for col in table.cols] == pytest.approx(
        [0.75, 0.4, 0.6])
    assert [table.counts[(("AT",), col, "clean_acc")] for col in table.cols] == [2, 1, 1]
    assert "the test data is a column field (test_data) of its own" in " ".join(table.notes)
    # grouped by dataset already: no extra column field, but the subsets still separate
    by_dataset = compare(paths, rows=["method"], cols=["metadata.dataset"],
                         metrics=["clean_acc"]).table
    assert len(by_dataset.cols) == 3


def test_a_metric_pattern_over_several_budgets_becomes_one_column_per_budget(
        tmp_path: Path) -> None:
    """`robust_acc/pgd*` used to average PGD at 8/255 with PGD at 1/255."""
    whole = "the whole test split"
    paths = [
        _report(tmp_path / "a" / "report.json", "GTSRB", whole,
                {"clean_acc": 0.8, "robust_acc/pgd10_linf_eps0.03137": 0.3}, method="AT"),
        _report(tmp_path / "b" / "report.json", "GTSRB", whole,
                {"clean_acc": 0.8, "robust_acc/pgd10_linf_eps0.003922": 0.7}, method="AT"),
        _report(tmp_path / "c" / "report.json", "GTSRB", whole,
                {"clean_acc": 0.9, "robust_acc/pgd10_linf_eps0.03137": 0.4}, method="TWINS"),
    ]
    comparison = compare(paths, rows=["method"], metrics=["clean=clean_acc",
                                                          "pgd=robust_acc/pgd*"], baseline="AT")
    table = comparison.table
    labels = [spec.label for spec in table.metrics]
    assert labels == ["clean", "pgd [linf eps=0.03137]", "pgd [linf eps=0.003922]"]
    assert table.value(("AT",), (), "pgd [linf eps=0.03137]") == pytest.approx(0.3)
    assert table.value(("AT",), (), "pgd [linf eps=0.003922]") == pytest.approx(0.7)
    assert comparison.change.value(("TWINS",), (), "pgd [linf eps=0.03137]") == pytest.approx(0.1)
    assert math.isnan(comparison.change.value(("TWINS",), (), "pgd [linf eps=0.003922]"))
    assert "Metric 'pgd' matched 2 threat models (linf eps=0.03137, linf eps=0.003922): one " \
           "column each." in table.notes
    assert comparison.fit is None and "matches several threat models" in comparison.fit_note
    with pytest.raises(ComparisonError, match="narrow its pattern to one budget"):
        compare(paths, rows=["method"], metrics=["clean=clean_acc", "pgd=robust_acc/pgd*"],
                baseline="AT", robust="pgd")
    one_budget = compare([paths[0], paths[2]], rows=["method"], baseline="AT", metrics=[
        "clean=clean_acc", "pgd=robust_acc/pgd*_eps0.03137"])
    assert [spec.label for spec in one_budget.table.metrics] == ["clean", "pgd"]
    assert "Metric 'pgd': linf eps=0.03137." in one_budget.table.notes


def test_threat_models_are_read_from_metric_names() -> None:
    assert threat_model("clean_acc") == ""
    assert threat_model("robust_acc/pgd10x3_linf_eps0.03137") == "linf eps=0.03137"
    assert threat_model("robust_acc/pgd20_linf_eps0.03137_step0.007843") == "linf eps=0.03137"
    assert threat_model("robust_acc/autoattack_apgd-ce+square_l2_eps0.5/square") == "l2 eps=0.5"
    assert threat_model("smoothing_sigma0.25/certified_acc@0.5") == "sigma=0.25"
