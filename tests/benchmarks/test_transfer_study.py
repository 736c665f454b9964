"""The self-contained transfer study's plan: every source before its fine-tunings, the
fine-tunings started from the sources' checkpoints, and the smoke scale end to end."""

from __future__ import annotations

import importlib.util
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
