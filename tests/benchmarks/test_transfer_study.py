"""The self-contained transfer study's plan: every source before its fine-tunings, the
fine-tunings started from the sources' checkpoints, and the smoke scale end to end."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("transfer_study",
                                              REPO / "benchmarks" / "transfer_study.py")
transfer_study = importlib.util.module_from_spec(spec)
spec.loader.exec_module(transfer_study)


def test_plan_pretrains_each_source_once_and_fine_tunes_from_its_checkpoint(tmp_path) -> None:
    plan = transfer_study.runs("cpu", tmp_path, ["random", "st", "simclr"], ["at", "cr"])
    names = [name for name, _ in plan]
    assert names == ["pre_st", "pre_simclr", "random__at", "random__cr", "st__at", "st__cr",
                     "simclr__at", "simclr__cr"]
    calls = dict(plan)
    assert "--model.init_args.pretrained" not in calls["random__at"]
    for source in ("st", "simclr"):
        args = calls[f"{source}__cr"]
        pretrained = args[args.index("--model.init_args.pretrained") + 1]
        assert pretrained == str(transfer_study.checkpoint(tmp_path, source))
        assert str(tmp_path / f"pre_{source}") in calls[f"pre_{source}"]


@pytest.mark.slow
def test_smoke_scale_writes_the_comparison(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = transfer_study.main(["--scale", "smoke", "--work", str(tmp_path / "study"),
                               "--sources", "random", "simclr", "--finetune", "cr"])
    table = (out / "study_smoke.md").read_text()
    assert "random__cr" in table and "simclr__cr" in table and "ACR" in table


def _report(path, clean: float, certified_at_0: float, certified_at_half: float, acr: float):
    path.mkdir(parents=True)
    metrics = {"clean_acc": clean, "robust_acc/ra_wb_apgd_ce_l2_eps0.5": clean / 2,
               "robust_acc/ra_bb_square_l2_eps0.5": clean / 1.5,
               "smoothing_sigma0.5/certified_acc@0": certified_at_0,
               "smoothing_sigma0.5/certified_acc@0.5": certified_at_half,
               "smoothing_sigma0.5/acr": acr}
    (path / "report.json").write_text(json.dumps({"metadata": {}, "config": {},
                                                  "metrics": metrics}))


def test_cr_rows_report_the_smoothed_classifiers_accuracy_as_sa(tmp_path) -> None:
    """The study's certified table: the SA of a CR row is the smoothed classifier's accuracy
    at radius 0 (not the base classifier's clean accuracy), beside RA-CT and ACR; the AT rows
    keep SA, RA-WB and RA-BB."""
    for source, shift in (("random", 0.0), ("st", 0.1)):
        _report(tmp_path / f"{source}__at", 0.5 + shift, 0.2, 0.1, 0.05)
        _report(tmp_path / f"{source}__cr", 0.9, 0.4 + shift, 0.3 + shift, 0.2 + shift)
    assert transfer_study.study_tables(["at", "cr"]) == {
        "empirical": (["at"], transfer_study.ACCURACY_METRICS),
        "certified": (["cr"], transfer_study.CERTIFIED_METRICS)}
    out = transfer_study.write_tables(tmp_path, "study_test", ["random", "st"], ["at", "cr"])
    certified = json.loads((out / "study_test_certified.json").read_text())
    assert certified["metrics"] == {"SA": "smoothing_sigma0.5/certified_acc@0",
                                    "RA-CT": "smoothing_sigma0.5/certified_acc@0.5",
                                    "ACR": "smoothing_sigma0.5/acr"}
    values = {row: {col.split(" · ")[-1]: v for col, v in cols.items()}
              for row, cols in certified["tables"]["absolute"].items()}
    assert values["st__cr"] == pytest.approx({"SA": 0.5, "RA-CT": 0.4, "ACR": 0.3})
    empirical = json.loads((out / "study_test_empirical.json").read_text())
    assert set(empirical["tables"]["absolute"]) == {"random__at", "st__at"}
    assert set(empirical["metrics"]) == {"SA", "RA-WB", "RA-BB"}
    both = (out / "study_test.md").read_text()
    assert "random__cr" in both and "random__at" in both and "ACR" in both
