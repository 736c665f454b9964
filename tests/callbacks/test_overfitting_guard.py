"""The catastrophic-overfitting guard: detection, bit-exact restoration, no side effects."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, LightningDataModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from lit_robust.attacks import PGDAttack
from lit_robust.callbacks import CatastrophicOverfittingGuard
from lit_robust.errors import ConfigurationError
from lit_robust.main import main
from lit_robust.methods import NFGSM, StandardTraining

REPO = Path(__file__).resolve().parents[2]
TINY = ["--config", str(REPO / "tests/conf/tiny_model.yaml"),
        "--config", str(REPO / "tests/conf/tiny_cifar10.yaml"),
        "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"]


class Images(LightningDataModule):
    """32 training and 16 held-out random images of 10 classes."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.x = torch.rand(48, 3, 16, 16, generator=generator)
        self.y = torch.randint(0, 10, (48,), generator=generator)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.x[:32], self.y[:32]), batch_size=8, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.x[32:], self.y[32:]), batch_size=8)


class TrainingImagesOnly(Images):
    val_dataloader = LightningDataModule.val_dataloader


class Scripted(CatastrophicOverfittingGuard):
    """The guard with scripted measurements: (PGD accuracy, FGSM accuracy) per check."""

    def __init__(self, script: list[tuple[float, float]], **kwargs) -> None:
        super().__init__(**kwargs)
        self.script = iter(script)

    def measure(self, trainer, pl_module) -> dict[str, float]:
        pgd_acc, fgsm_acc = next(self.script)
        return {"clean_acc": 0.5, "fgsm_acc": fgsm_acc, "pgd_acc": pgd_acc,
                "epoch": trainer.current_epoch, "step": trainer.global_step}


class StateAtChecks(Callback):
    """Copies the module's state where the guard checks (it runs first, in the same hook)."""

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx + 1 == trainer.num_training_batches:
            self.states.append({k: v.clone() for k, v in pl_module.state_dict().items()})


def method(**kwargs) -> StandardTraining:
    return StandardTraining(backbone="tiny_cnn", backbone_kwargs={"width": 4}, num_classes=10,
                            mean=[0.5] * 3, std=[0.25] * 3, lr=0.05, val_attack=None, **kwargs)


def fit(guard: Callback | None, epochs: int, data: LightningDataModule | None = None,
        extra: list[Callback] | None = None, root: Path | None = None,
        module: StandardTraining | None = None) -> tuple[StandardTraining, Trainer]:
    torch.manual_seed(0)
    module = module or method()
    callbacks = (extra or []) + ([guard] if guard is not None else [])
    if root is not None:
        callbacks.append(ModelCheckpoint(dirpath=root, save_last=True, save_top_k=0))
    trainer = Trainer(max_epochs=epochs, logger=False, enable_checkpointing=root is not None,
                      enable_progress_bar=False, enable_model_summary=False,
                      inference_mode=False, accelerator="cpu", callbacks=callbacks,
                      limit_val_batches=1, num_sanity_val_steps=0)
    trainer.fit(module, data or Images())
    return module, trainer


def test_a_scripted_collapse_restores_the_last_good_weights_bit_for_bit(tmp_path) -> None:
    states = StateAtChecks()
    guard = Scripted([(0.30, 0.40), (0.35, 0.45), (0.02, 0.90), (0.40, 0.40)])
    module, trainer = fit(guard, epochs=4, extra=[states], root=tmp_path)
    assert len(guard.history) == 3 and trainer.current_epoch == 3  # stopped after epoch 2
    good, collapsed = states.states[1], states.states[2]
    assert any(not torch.equal(good[k], collapsed[k]) for k in good)  # training moved on
    now = module.state_dict()
    assert all(torch.equal(now[k], good[k]) for k in good)
    assert guard.events == [{"detected_at": {"epoch": 2, "step": 12},
                             "restored": {"epoch": 1, "step": 8},
                             "pgd_acc": [0.35, 0.02], "fgsm_acc": [0.45, 0.90],
                             "best_pgd_acc": 0.35}]
    checkpoint = torch.load(tmp_path / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["weights_from"] == {"epoch": 1, "step": 8}
    assert all(torch.equal(checkpoint["state_dict"][k], good[k]) for k in good)


def test_a_gradual_decline_restores_the_latest_good_check_not_the_best() -> None:
    states = StateAtChecks()
    guard = Scripted([(0.30, 0.40), (0.15, 0.35), (0.05, 0.50)])
    module, _ = fit(guard, epochs=3, extra=[states])
    assert guard.events[0]["restored"]["epoch"] == 1  # 0.15 is within 0.2 of the best 0.30
    assert all(torch.equal(module.state_dict()[k], v) for k, v in states.states[1].items())


@pytest.mark.parametrize("require_rise, restored", [(True, False), (False, True)])
def test_without_an_fgsm_rise_it_is_no_collapse_unless_told(require_rise, restored) -> None:
    guard = Scripted([(0.30, 0.40), (0.02, 0.10)], require_fgsm_rise=require_rise)
    fit(guard, epochs=2)
    assert bool(guard.events) is restored


def test_every_n_steps_checks_within_epochs() -> None:
    guard = Scripted([(0.3, 0.4)] * 10, every_n_steps=3)
    fit(guard, epochs=2)  # 4 steps per epoch: checks at steps 3 and 6
    assert [record["step"] for record in guard.history] == [3, 6]


def test_the_guard_leaves_training_untouched_and_measures_on_held_out_images() -> None:
    """Its attacks draw from their own seeded generator and restore the BN mode: a guarded run
    that never collapses ends with bit-identical weights; the measurements are accuracies of
    the held-out images (ε = 0: all three are clean accuracy)."""
    plain, _ = fit(None, epochs=2, module=NFGSM(
        backbone="tiny_cnn", backbone_kwargs={"width": 4}, num_classes=10, mean=[0.5] * 3,
        std=[0.25] * 3, lr=0.05))
    guard = CatastrophicOverfittingGuard(num_images=12)
    guarded, trainer = fit(guard, epochs=2, module=NFGSM(
        backbone="tiny_cnn", backbone_kwargs={"width": 4}, num_classes=10, mean=[0.5] * 3,
        std=[0.25] * 3, lr=0.05))
    assert len(guard.history) == 2 and not guard.events
    assert all(torch.equal(v, guarded.state_dict()[k]) for k, v in plain.state_dict().items())
    record = guard.history[-1]
    assert 0 <= record["pgd_acc"] <= record["clean_acc"]
    assert abs(record["clean_acc"] * 12 - round(record["clean_acc"] * 12)) < 1e-9
    zero = CatastrophicOverfittingGuard(num_images=12, attack=PGDAttack(eps=0.0))
    zero._held_out = guard._held_out
    measured = zero.measure(trainer, guarded)
    assert measured["clean_acc"] == measured["fgsm_acc"] == measured["pgd_acc"]
    assert sum(len(y) for _, y in guard._held_out) == 12


def test_a_guard_without_held_out_images_stops_before_training() -> None:
    module = method()
    with pytest.raises(ConfigurationError, match="val_size > 0"):
        fit(CatastrophicOverfittingGuard(), epochs=1, data=TrainingImagesOnly(), module=module)


def test_the_cli_names_the_missing_validation_split_in_one_line(tmp_path, capsys,
                                                                 monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *TINY, "--data.init_args.val_size", "0",
              "--data.init_args.val_samples_per_class", "null",
              "--trainer.callbacks+=lit_robust.callbacks.CatastrophicOverfittingGuard"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("lit-robust: error: CatastrophicOverfittingGuard needs held-out")
    assert "\n" not in error


@pytest.mark.parametrize("bad", [{"num_images": 0}, {"every_n_steps": 0}, {"max_drop": 0.0},
                                 {"max_drop": 1.5}])
def test_bad_guard_settings_fail_at_construction(bad) -> None:
    with pytest.raises(ValueError):
        CatastrophicOverfittingGuard(**bad)
