"""``test`` with fast_dev_run of every shipped RoLI stage-1 config (``tests/test_configs.py`` runs
their ``fit``; ``tests/methods/test_roli.py`` runs stage 2's ``fit`` and ``test``): the linear
probe is a classifier of its own and evaluates through the same harness."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lit_robust.main import cli
from lit_robust.methods.roli import RoLI
from tests.methods.test_roli import CHEAP_EVALUATORS
from tests.test_configs import fit_args

REPO = Path(__file__).resolve().parents[2]
PROBES = sorted((REPO / "configs/experiments/roli").glob("*_probe.yaml"))


@pytest.mark.parametrize("config", PROBES, ids=lambda p: p.stem)
def test_shipped_probe_config_tests_through_the_cli(config: Path, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])
    args = fit_args(config, tmp_path)
    run = cli(["test", *args[1:], "--model.init_args.evaluators", CHEAP_EVALUATORS])
    assert isinstance(run.model, RoLI) and run.model.stage == "probe"
    assert {"clean_acc", "robust_acc"} <= {key.split("/")[0] for key in run.model.test_results}
