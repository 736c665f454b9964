"""A ``fit`` killed with SIGKILL in mid-epoch and resumed with ``--ckpt_path last`` ends with
the very weights and validation metrics of an uninterrupted run (deterministic, CPU); the
epoch-level train metrics of the interrupted epoch cover only its resumed part, and the resume
says so."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_robust.main import cli
from tests.shared_paths import shared_data_root

REPO = Path(__file__).resolve().parents[1]
ONE_STEP = {"class_path": "lit_robust.attacks.PGDAttack",
            "init_args": {"eps": 0.031372549, "step_size": 0.031372549, "steps": 1}}
KILL_AT_STEP = 7  # epoch 1 has steps 5..9: 40 images in batches of 8
KILLER = '''
import os, signal
from lightning.pytorch import Callback

class KillAt(Callback):
    """SIGKILL this process when the given optimizer step has been taken."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
'''
CHILD = (
    "import sys, torch; torch.set_num_threads(2); "
    "from lit_robust.main import main; main(sys.argv[1:])"
)

METHODS = {
    "AdversarialTraining": ["--model", "lit_robust.methods.AdversarialTraining",
                            "--model.attack", json.dumps(ONE_STEP)],
    "RiFT": ["--model", "lit_robust.methods.RiFT", "--model.mrc_epochs", "1",
             "--model.mrc_attack", json.dumps(ONE_STEP),
             "--model.interpolation_attack", json.dumps(ONE_STEP),
             "--model.alphas", "[0.0, 0.5, 1.0]", "--model.lr", "0.05"],
    "TWINS": ["--model", "lit_robust.methods.TWINS", "--model.attack", json.dumps(ONE_STEP),
              "--model.lr", "0.05", "--model.log_grad_ratio_every_n_steps", "3"],
}


def _args(tmp_path: Path, method: str, save_dir: Path, every_n_steps: int | None = 2
          ) -> list[str]:
    pretrained = tmp_path / "pretrained.pt"
    if not pretrained.is_file():
        from lit_robust.models.zoo import build_backbone

        torch.manual_seed(1)
        torch.save(build_backbone("tiny_cnn", num_classes=10).state_dict(), pretrained)
    return [
        *METHODS[method],
        "--model.backbone", "tiny_cnn", "--model.pretrained", str(pretrained),
        "--model.val_attack", json.dumps(ONE_STEP), "--model.evaluators", "[]",
        "--data", "lit_robust.data.CIFAR10DataModule", "--data.samples_per_class", "4",
        "--data.val_size", "20", "--data.val_samples_per_class", "2", "--data.batch_size", "8",
        "--data.num_workers", "0",
        "--trainer.max_epochs", "3", "--trainer.accelerator", "cpu",
        "--trainer.deterministic", "true", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.log_every_n_steps", "1",
        "--trainer.logger.init_args.save_dir", str(save_dir),
        *(["--checkpoint_every_n_steps", str(every_n_steps)] if every_n_steps else []),
    ]


def _killed_run(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "killer.py").write_text(KILLER)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "LIT_ROBUST_DATA": str(shared_data_root())}
    kill = json.dumps({"class_path": "killer.KillAt", "init_args": {"step": KILL_AT_STEP}})
    child = subprocess.run(
        [sys.executable, "-c", CHILD, "fit", *args, "--trainer.callbacks+", kill],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-3000:]


def _scalars(folder: Path, tag: str) -> dict[int, float]:
    """``{step: value}`` of a TensorBoard tag over every event file of a run folder."""
    events = EventAccumulator(str(folder))
    events.Reload()
    return {event.step: event.value for event in events.Scalars(tag)}


def _state(run) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in run.model.model.state_dict().items()}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """``run(method)``: the uninterrupted fit of ``method`` and its log folder, fitted once per
    module (the checkpoint policy saves what a run computes and never changes it)."""
    runs = {}

    def run(method: str):
        if method not in runs:
            folder = tmp_path_factory.mktemp(f"whole_{method}")
            with pytest.MonkeyPatch.context() as patch:
                patch.chdir(folder)
                patch.setattr(sys, "argv", ["lit-robust"])
                runs[method] = cli(["fit", *_args(folder, method, folder / "whole")])
            runs[method].log_root = folder / "whole"
        return runs[method]

    return run


@pytest.mark.parametrize("method", [
    "AdversarialTraining",
    pytest.param("RiFT", marks=pytest.mark.slow),
    pytest.param("TWINS", marks=pytest.mark.slow),
])
def test_a_killed_fit_resumes_to_the_uninterrupted_result(method: str, tmp_path: Path,
                                                         monkeypatch, uninterrupted) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])
    whole = uninterrupted(method)
    assert whole.trainer.global_step == 15

    interrupted = _args(tmp_path, method, tmp_path / "interrupted")
    _killed_run(tmp_path, interrupted)
    last = tmp_path / "interrupted" / "lit_robust" / "version_0" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=False)
    assert saved["global_step"] == 6 and saved["epoch"] == 1  # in mid-epoch
    with pytest.warns(UserWarning, match="resumed in mid-epoch: epoch 1 restarts at batch 1 of "
                                         "5, so its epoch-level train metrics .* average only "
                                         "its last 4 batches"):
        resumed = cli(["fit", *interrupted, "--ckpt_path", "last"])
    assert resumed.trainer.global_step == 15
    assert resumed.trainer.logger.version == 0  # logs into the killed run's folder
    assert not (tmp_path / "interrupted" / "lit_robust" / "version_1").exists()

    _assert_same_weights_and_validation(whole, resumed)
    actual = _state(resumed)
    # epoch 1's train/loss covers batches 1-4 after the resume, all 5 without one
    run = Path("lit_robust") / "version_0"
    losses = list(_scalars(whole.log_root / run, "train/loss_step").values())
    whole_epochs = _scalars(whole.log_root / run, "train/loss_epoch")
    resumed_epochs = _scalars(tmp_path / "interrupted" / run, "train/loss_epoch")
    epoch_1 = sorted(whole_epochs)[1]
    assert len(losses) == 15
    assert whole_epochs[epoch_1] == pytest.approx(sum(losses[5:10]) / 5, rel=1e-5)
    assert resumed_epochs[epoch_1] == pytest.approx(sum(losses[6:10]) / 4, rel=1e-5)
    assert _scalars(tmp_path / "interrupted" / run, "train/resumed_at_batch") == {epoch_1: 1.0}
    assert "train/resumed_at_batch" not in whole.trainer.callback_metrics
    if method == "RiFT":
        assert resumed.model.finetuned_modules == whole.model.finetuned_modules
        assert resumed.model.alpha == whole.model.alpha
        assert resumed.model.sweep == whole.model.sweep
        assert resumed.model._base_state.keys() == whole.model._base_state.keys()
        assert all(torch.equal(v, whole.model._base_state[k])
                   for k, v in resumed.model._base_state.items())
    if method == "TWINS":  # both wings, statistics and affine parameters
        wings = [k for k in actual if ".frozen." in k or ".adaptive." in k]
        assert any(".frozen.running_mean" in k for k in wings)
        assert any(".adaptive.weight" in k for k in wings)


def _assert_same_weights_and_validation(whole, resumed) -> None:
    expected, actual = _state(whole), _state(resumed)
    assert expected.keys() == actual.keys()
    differing = {k: float((expected[k].double() - actual[k].double()).abs().max())
                 for k in expected if not torch.equal(expected[k], actual[k])}
    assert not differing, f"resumed weights differ (max |dw|): {differing}"
    metrics = {k: v for k, v in whole.trainer.callback_metrics.items() if k.startswith("val/")}
    assert metrics and all(
        torch.equal(v, resumed.trainer.callback_metrics[k]) for k, v in metrics.items())


def test_a_fit_killed_after_an_end_of_epoch_checkpoint_resumes_to_the_uninterrupted_result(
        tmp_path: Path, monkeypatch, uninterrupted) -> None:
    """The default checkpoints (end of epoch only): killed at step 7 of 15, resumed from epoch
    0's last.ckpt (step 5). It used to end with other weights (max |dw| 0.04): each epoch's
    DataLoader iterator drew a seed from the global generator, in the uninterrupted run after
    the checkpoint saved the global random state, in the resumed run before it was restored."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])
    method = "AdversarialTraining"
    whole = uninterrupted(method)
    interrupted = _args(tmp_path, method, tmp_path / "interrupted", every_n_steps=None)
    _killed_run(tmp_path, interrupted)
    last = tmp_path / "interrupted" / "lit_robust" / "version_0" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=False)
    assert saved["global_step"] == 5 and saved["epoch"] == 0  # the end of epoch 0
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="training resumed in mid-epoch")
        resumed = cli(["fit", *interrupted, "--ckpt_path", "last"])
    assert resumed.trainer.global_step == 15
    _assert_same_weights_and_validation(whole, resumed)
    run = Path("lit_robust") / "version_0"
    whole_epochs = _scalars(whole.log_root / run, "train/loss_epoch")
    resumed_epochs = _scalars(tmp_path / "interrupted" / run, "train/loss_epoch")
    assert len(whole_epochs) == 3  # epochs 1 and 2, trained after the resume, are whole
    assert sorted(resumed_epochs.items())[-2:] == sorted(whole_epochs.items())[-2:]
