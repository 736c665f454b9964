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
    write_reports(tmp_path)
    comparison = compare([tmp_path], rows=["model.k"], cols=["config.attack.init_args.eps"],
                         metrics=["clean_acc"])
    assert comparison.table.rows == [("4",), ("6",)]
    assert comparison.table.cols == [("0.03137",)]
    assert comparison.table.header() == ["model.k", "eps=0.03137 · clean_acc"]
    assert comparison.table.value(("6",), ("0.03137",), "clean_acc") == pytest.approx(0.9)
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
    paths = write_reports(tmp_path)
    document = json.loads(paths[0].read_text())
    del document["config"]["k"]
    paths[0].write_text(json.dumps(document))
    comparison = compare(paths, rows=["method"], cols=["model.k"], metrics=["clean_acc"],
                         fill_missing="-")
    assert comparison.table.cols == [("-",), ("4",), ("6",)]
    assert comparison.table.value(("AT",), ("-",), "clean_acc") == pytest.approx(0.80)
    assert comparison.table.value(("AT",), ("4",), "clean_acc") == pytest.approx(0.90)


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
    assert "| TRADES | 90.00 (n=3) |" in result.stdout
    assert (tmp_path / "out" / "comparison.md").is_file()
