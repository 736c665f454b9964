"""RoLI: stage 1 trains the head alone on a frozen backbone and keeps its best head; stage 2
starts from exactly that head; clear errors; the shipped config pairs run stage after stage."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from lit_robust.main import cli, main
from lit_robust.methods.roli import PROBE_KEY, RoLI
from lit_robust.models.surgery import get_head
from lit_robust.models.zoo import build_backbone
from tests.test_configs import fit_args

REPO = Path(__file__).resolve().parents[2]
TINY = ["--config", str(REPO / "tests/conf/tiny_model.yaml"),
        "--config", str(REPO / "tests/conf/tiny_cifar10.yaml"),
        "--model", "RoLI", "--model.backbone", "tiny_cnn",
        "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false"]
# cheap test-time evaluators (the configs' AutoAttack needs more classes than the tiny
# class-folder data has)
CHEAP_EVALUATORS = json.dumps([
    {"class_path": "lit_robust.evaluation.CleanAccuracy"},
    {"class_path": "lit_robust.evaluation.PGDEvaluator", "init_args": {"steps": 1}}])
PLAIN = {"backbone": "tiny_cnn", "num_classes": 10, "mean": [0.0] * 3, "std": [1.0] * 3}


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])


def _stage1_checkpoint(path: Path) -> tuple[RoLI, dict[str, torch.Tensor]]:
    """A stage-1 checkpoint whose best head differs from its current head."""
    torch.manual_seed(0)
    probe = RoLI(stage="probe", **PLAIN)
    probe.configure_model()
    probe.train()  # train mode reaches the head alone
    assert all(not m.training for m in probe.model.net.modules() if m is not probe.model.net.linear)
    head = get_head(probe.model)[1]
    assert head.training
    probe.best_head = {k: torch.randn_like(v) for k, v in head.state_dict().items()}
    probe.best_head_accuracy = 0.5
    checkpoint = {"state_dict": probe.state_dict()}
    probe.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return probe, probe.best_head


def test_stage2_starts_from_stage1s_best_head_bit_for_bit(tmp_path) -> None:
    probe, best = _stage1_checkpoint(tmp_path / "probe.ckpt")
    finetune = RoLI(stage="finetune", probe_checkpoint=str(tmp_path / "probe.ckpt"), **PLAIN)
    finetune.configure_model()
    head = get_head(finetune.model)[1].state_dict()
    assert all(torch.equal(head[k], best[k]) for k in best)
    backbone = {k: v for k, v in finetune.model.state_dict().items() if "linear" not in k}
    reference = probe.model.state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in backbone.items())
    assert all(p.requires_grad for p in finetune.model.parameters())  # full fine-tuning


def test_stage1_keeps_the_head_of_the_best_validation_robust_accuracy() -> None:
    probe = RoLI(stage="probe", **PLAIN)
    probe.configure_model()
    probe._trainer = SimpleNamespace(sanity_checking=False)
    head = get_head(probe.model)[1]
    target = torch.zeros(10, dtype=torch.long)
    heads = {}
    for epoch, correct in enumerate([5, 3, 7, 6]):  # robust accuracy 0.5, 0.3, 0.7, 0.6
        with torch.no_grad():
            head.weight.fill_(float(epoch))
        heads[epoch] = head.weight.clone()
        probe.val_robust_acc.reset()
        probe.val_robust_acc.update(torch.cat([target[:correct], target[correct:] + 1]), target)
        probe.on_validation_epoch_end()
    assert probe.best_head_accuracy == pytest.approx(0.7)
    assert torch.equal(probe.best_head["weight"], heads[2])


def test_stage1_trains_the_head_alone_and_keeps_the_best_one(tmp_path) -> None:
    torch.manual_seed(0)
    source = build_backbone("tiny_cnn", num_classes=10)
    torch.save(source.state_dict(), tmp_path / "source.pt")
    run = cli(["fit", *TINY, "--model.stage", "probe", "--model.pretrained",
               str(tmp_path / "source.pt"), "--model.reset_head", "true",
               "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "2"])
    method = run.model
    checkpoint = torch.load(run.trainer.checkpoint_callback.last_model_path, weights_only=True)
    assert checkpoint[PROBE_KEY]["val_accuracy"] == method.best_head_accuracy >= 0
    assert all(torch.equal(checkpoint[PROBE_KEY]["head"][k], method.best_head[k])
               for k in method.best_head)
    # the backbone's weights and BatchNorm statistics are the source's, bit for bit
    trained = method.model.net.state_dict()
    frozen = [k for k in source.state_dict() if not k.startswith("linear")]
    assert len(frozen) > 10 and all(torch.equal(trained[k], source.state_dict()[k])
                                    for k in frozen)
    assert trained["linear.weight"].shape == (10, source.linear.in_features)


def test_stage2_without_a_stage1_checkpoint_is_a_one_line_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *TINY, "--model.stage", "finetune", "--trainer.fast_dev_run", "true"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("lit-robust: error: RoLI stage 2 (stage: finetune) starts from a "
                            "stage-1 checkpoint") and "\n" not in error


def test_stage2_with_a_missing_checkpoint_file_is_a_one_line_error(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *TINY, "--model.stage", "finetune", "--model.probe_checkpoint",
              str(tmp_path / "nope.ckpt"), "--trainer.fast_dev_run", "true"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("lit-robust: error: RoLI stage 2: the stage-1 checkpoint ")
    assert "nope.ckpt does not exist" in error and "\n" not in error


def test_stage_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="drop model.pretrained"):
        RoLI(stage="finetune", probe_checkpoint="a.ckpt", pretrained="b.ckpt")
    with pytest.raises(ValueError, match="model.peft belongs to stage 2"):
        RoLI(stage="probe", peft=object())
    with pytest.raises(ValueError, match="stage must be 'probe' or 'finetune'"):
        RoLI(stage="both")
    # stage 1 keeps the source's layers, so it adopts (or insists on) its normalization
    assert RoLI(stage="probe").keeps_source_layers
    assert not RoLI(stage="finetune", probe_checkpoint="a.ckpt").keeps_source_layers


PAIRS = sorted(p.name.removesuffix("_probe.yaml")
               for p in (REPO / "configs/experiments/roli").glob("*_probe.yaml"))


@pytest.mark.parametrize("target", PAIRS)
def test_shipped_config_pair_runs_stage_after_stage(target, tmp_path) -> None:
    """Stage 1's fit (fast_dev_run), its checkpoint, then stage 2's fit and test."""
    folder = REPO / "configs/experiments/roli"
    probe = cli(fit_args(folder / f"{target}_probe.yaml", tmp_path / "probe"))
    checkpoint = tmp_path / "probe.ckpt"
    probe.trainer.save_checkpoint(checkpoint)
    args = fit_args(folder / f"{target}_finetune.yaml", tmp_path / "finetune")
    finetune = cli([*args, "--model.init_args.probe_checkpoint", str(checkpoint),
                    "--model.init_args.evaluators", CHEAP_EVALUATORS, "--test_after_fit", "true"])
    assert finetune.trainer.global_step == 1 and finetune.model.test_results
