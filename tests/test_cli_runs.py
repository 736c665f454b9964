"""Which weights a ``lit-robust`` run evaluates and where it writes: ``--ckpt_path last``,
``--test_after_fit`` (also with ``ddp_spawn``), ``trainer.default_root_dir``, no logger."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from lit_robust.errors import ConfigurationError
from lit_robust.main import cli, main
from lit_robust.run_folders import setting_differences
from tests.conf.tiny_overrides import SHORT_FIT, TINY_CLI

TINY = TINY_CLI


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])


def _report(folder: Path) -> dict:
    (path,) = folder.rglob("report.json")
    return json.loads(path.read_text())


def test_ckpt_path_last_without_an_earlier_run_is_a_one_line_error(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["test", *TINY, "--ckpt_path", "last"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("lit-robust: error: --ckpt_path last: no earlier run")
    assert "logs/lit_robust/version_*/checkpoints/last.ckpt" in error
    assert "\n" not in error and not list(tmp_path.rglob("report.json"))


def test_test_with_ckpt_path_last_evaluates_the_latest_fit(tmp_path) -> None:
    cli(["fit", *TINY, *SHORT_FIT])  # version_0
    second = cli(["fit", *TINY, *SHORT_FIT, "--seed_everything", "1"])  # version_1, newer
    last = Path(second.trainer.checkpoint_callback.last_model_path).resolve()
    assert last.parent.parent.name == "version_1"

    tested = cli(["test", *TINY, "--ckpt_path", "last"])
    assert tested.trainer.logger.version == 1  # logs beside the checkpoint it tests
    trained = second.model.model.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in tested.model.model.state_dict().items())
    weights = _report(tmp_path / "logs" / "lit_robust" / "version_1")["provenance"]["weights"]
    assert weights == {"source": "checkpoint", "path": str(last), "epoch": 0, "step": 2}


def test_ckpt_path_last_refuses_a_checkpoint_of_another_method(tmp_path) -> None:
    cli(["fit", *TINY, *SHORT_FIT])  # AdversarialTraining, version_0
    with pytest.raises(ConfigurationError, match="written by lit_robust.methods.AdversarialTr"):
        cli(["test", *TINY, "--model", "StandardTraining", "--model.backbone", "tiny_cnn",
             "--ckpt_path", "last"])


def test_ckpt_path_last_refuses_a_run_with_other_settings(tmp_path) -> None:
    cli(["fit", *TINY, *SHORT_FIT, "--model.lr", "0.05"])  # version_0
    cli(["fit", *TINY, *SHORT_FIT])  # version_1, newer, the config's lr 0.1
    with pytest.raises(ConfigurationError) as refused:
        cli(["test", *TINY, "--model.lr", "0.05", "--ckpt_path", "last"])
    message = str(refused.value)
    assert message.startswith(
        "--ckpt_path last resolved to logs/lit_robust/version_1/checkpoints/last.ckpt, a run of "
        "lit_robust.methods.AdversarialTraining with other settings than this command's: lr: "
        "0.1 in the checkpoint, 0.05 now. Pass the checkpoint to use explicitly")
    assert message.endswith("the newest earlier run with this command's settings is "
                            "logs/lit_robust/version_0/checkpoints/last.ckpt")
    # nested settings are compared one by one, for a resumed fit as for a test
    with pytest.raises(ConfigurationError, match=(
            r"other settings than this command's: attack\.init_args\.steps: 1 in the checkpoint, "
            r"2 now\. .*no earlier run there has this command's settings")):
        cli(["fit", *TINY, *SHORT_FIT, "--model.attack.init_args.steps", "2", "--ckpt_path",
             "last"])
    # the same settings as the newest run: resolved as before
    tested = cli(["test", *TINY, "--ckpt_path", "last"])
    assert tested.trainer.logger.version == 1


def test_step_checkpoints_and_epoch_checkpoints_share_the_one_last_ckpt(tmp_path) -> None:
    """With --checkpoint_every_n_steps a fit used to leave last.ckpt (an earlier step) beside
    last-v1.ckpt (the final state), and `test --ckpt_path last` tested the earlier model."""
    fit = cli(["fit", *TINY, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3",
               "--trainer.limit_val_batches", "1", "--checkpoint_every_n_steps", "2"])
    folder = tmp_path / "logs" / "lit_robust" / "version_0" / "checkpoints"
    assert sorted(p.name for p in folder.glob("last*.ckpt")) == ["last.ckpt"]
    assert torch.load(folder / "last.ckpt", map_location="cpu",
                      weights_only=False)["global_step"] == 3

    tested = cli(["test", *TINY, "--ckpt_path", "last"])
    final = fit.model.model.state_dict()
    assert all(torch.equal(v, final[k]) for k, v in tested.model.model.state_dict().items())
    weights = _report(tmp_path / "logs")["provenance"]["weights"]
    assert weights["path"] == str((folder / "last.ckpt").resolve()) and weights["step"] == 3


def test_setting_differences_skip_unset_and_bookkeeping_keys() -> None:
    saved = {"_class_path": "A", "lr": 0.1, "num_classes": 10, "mean": (0.5, 0.5),
             "attack": {"class_path": "P", "init_args": {"eps": 0.03, "steps": 1}}}
    same = {"lr": 0.1, "num_classes": None, "mean": [0.5, 0.5], "report_dir": "x",
            "attack": {"class_path": "P", "init_args": {"eps": 0.03, "steps": 1}}}
    assert setting_differences(saved, same) == []
    other = {**same, "mean": [0.4, 0.5], "attack": {"class_path": "P",
                                                    "init_args": {"eps": 0.03, "steps": 3}}}
    assert setting_differences(saved, other) == [
        "mean: (0.5, 0.5) in the checkpoint, [0.4, 0.5] now",
        "attack.init_args.steps: 1 in the checkpoint, 3 now"]


def test_test_after_fit_reports_the_checkpoint_it_tested(tmp_path) -> None:
    fit = cli(["fit", *TINY, *SHORT_FIT, "--test_after_fit", "true"])
    report = _report(tmp_path / "logs")
    last = Path(fit.trainer.checkpoint_callback.last_model_path).resolve()
    assert report["provenance"]["weights"] == {
        "source": "checkpoint", "path": str(last), "epoch": 0, "step": 2}
    data = report["provenance"]["test_data"]
    assert data["test_images"] == 10 and "at most 1 per class" in data["subset_rule"]
    assert report["provenance"]["images_per_metric"]["clean_acc"] == 10
    (pgd,) = [e for e in report["provenance"]["evaluators"] if e["class"] == "PGDEvaluator"]
    assert "steps=2" in pgd["attacks"][0] and "restarts=2" in pgd["attacks"][0]


def test_default_root_dir_holds_logs_checkpoints_and_reports(tmp_path) -> None:
    root = tmp_path / "runs"
    fit = cli(["fit", *TINY, *SHORT_FIT, "--trainer.default_root_dir", str(root),
               "--test_after_fit", "true"])
    assert Path(fit.trainer.log_dir) == root / "logs" / "lit_robust" / "version_0"
    assert (root / "logs" / "lit_robust" / "version_0" / "checkpoints" / "last.ckpt").is_file()
    assert (root / "logs" / "lit_robust" / "version_0" / "report.json").is_file()
    assert not (tmp_path / "logs").exists()


def test_without_a_logger_the_report_goes_to_default_root_dir(tmp_path) -> None:
    root = tmp_path / "runs"
    cli(["fit", *TINY, *SHORT_FIT, "--trainer.logger", "false",
         "--trainer.default_root_dir", str(root), "--test_after_fit", "true"])
    assert (root / "report.json").is_file() and (root / "report.md").is_file()
    assert (root / "checkpoints" / "last.ckpt").is_file()


def test_test_after_fit_with_ddp_spawn_tests_the_trained_weights(tmp_path) -> None:
    """... and its report lands beside the checkpoint it tested, not in a new version_1."""
    fit = cli(["fit", *TINY, *SHORT_FIT, "--trainer.strategy", "ddp_spawn",
               "--trainer.devices", "2", "--test_after_fit", "true"])
    run = tmp_path / "logs" / "lit_robust" / "version_0"
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]
    report = _report(run)
    weights = report["provenance"]["weights"]
    assert weights["source"] == "checkpoint" and weights["step"] == 2
    last = Path(weights["path"])
    assert last == run / "checkpoints" / "last.ckpt" and last.parent == Path(
        fit.trainer.checkpoint_callback.best_model_path).resolve().parent

    single = cli(["test", *TINY, "--ckpt_path", str(last),
                  "--model.init_args.report_dir", str(tmp_path / "single")])
    assert report["metrics"] == _report(tmp_path / "single")["metrics"]
    trained = torch.load(last, map_location="cpu", weights_only=False)["state_dict"]
    untrained = {k: v for k, v in single.model.state_dict().items() if k.startswith("model.")}
    assert all(torch.equal(trained[k], v) for k, v in untrained.items())


def test_test_after_fit_with_ddp_spawn_and_no_checkpoint_refuses(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["fit", *TINY, "--trainer.strategy", "ddp_spawn", "--trainer.devices", "2",
              "--trainer.fast_dev_run", "true", "--test_after_fit", "true"])
    assert "stayed in the processes" in capsys.readouterr().err
