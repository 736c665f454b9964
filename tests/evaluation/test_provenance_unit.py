"""Provenance of a robustness report, function by function on hand-made modules, trainers and
evaluators whose exact answer is known: which weights (checkpoint with its epoch and step,
weights at the end of fit, a pretrained file, fresh weights), how many images an evaluator
counted, every evaluator's settings and the DataModule's description of the test images."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.utilities.parsing import AttributeDict
from torch import Tensor, nn

from lit_robust.attacks import PGDAttack
from lit_robust.evaluation import (
    AutoAttackEvaluator,
    CleanAccuracy,
    Evaluator,
    PGDEvaluator,
    provenance,
)
from lit_robust.evaluation.provenance import evaluated_weights, evaluator_settings, images_counted


def _module(
    ckpt_path: str | None = None,
    global_step: int = 0,
    current_epoch: int = 0,
    restored_from: dict | None = None,
    hparams: dict | None = None,
    datamodule: object = None,
) -> SimpleNamespace:
    """A stand-in for a LightningModule: the attributes the provenance functions read."""
    trainer = SimpleNamespace(ckpt_path=ckpt_path, global_step=global_step,
                              current_epoch=current_epoch, datamodule=datamodule)
    module = SimpleNamespace(trainer=trainer, restored_from=restored_from)
    if hparams is not None:
        module.hparams = AttributeDict(hparams)
    return module


def test_a_checkpoint_gives_its_resolved_path_with_the_restored_epoch_and_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    module = _module(ckpt_path="run/last.ckpt", global_step=300, current_epoch=3,
                     restored_from={"epoch": 2, "step": 250}, hparams={"pretrained": "p.pt"})
    assert evaluated_weights(module) == {
        "source": "checkpoint", "path": str((tmp_path / "run" / "last.ckpt").resolve()),
        "epoch": 2, "step": 250,
    }


def test_a_checkpoint_without_a_record_of_its_epoch_gives_none(tmp_path: Path) -> None:
    path = str(tmp_path / "a.ckpt")
    for restored in (None, {}):
        assert evaluated_weights(_module(ckpt_path=path, restored_from=restored)) == {
            "source": "checkpoint", "path": path, "epoch": None, "step": None,
        }


@pytest.mark.parametrize(("step", "epoch"), [(1, 0), (40, 3)])
def test_weights_at_the_end_of_fit_give_the_trainer_epoch_and_step(step: int, epoch: int) -> None:
    module = _module(global_step=step, current_epoch=epoch, hparams={"pretrained": "p.pt"})
    assert evaluated_weights(module) == {
        "source": "weights in memory at the end of fit", "path": None, "epoch": epoch,
        "step": step,
    }


def test_a_pretrained_file_gives_its_resolved_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    module = _module(hparams={"pretrained": "weights/backbone.pt"})
    assert evaluated_weights(module) == {
        "source": "pretrained", "path": str((tmp_path / "weights" / "backbone.pt").resolve()),
        "epoch": None, "step": None,
    }


@pytest.mark.parametrize("hparams", [None, {}, {"pretrained": None}, {"pretrained": ""}])
def test_fresh_weights_are_reported_as_untrained(hparams: dict | None) -> None:
    assert evaluated_weights(_module(hparams=hparams)) == {
        "source": "untrained: freshly initialized weights", "path": None, "epoch": None,
        "step": None,
    }


class _PredictionRecorder(Evaluator):
    """An evaluator that keeps a list of prediction tensors instead of a ``total``."""

    def __init__(self) -> None:
        super().__init__(name="recorder")
        self.add_state("predictions", default=[], dist_reduce_fx="cat")

    def update(self, model: nn.Module, x: Tensor, y: Tensor) -> None:  # type: ignore[override]
        self.predictions.append(y.clone())

    def compute(self) -> dict[str, float]:
        return {}


def test_images_counted_reads_the_total_of_an_evaluator() -> None:
    evaluator = CleanAccuracy()
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3))
    assert images_counted(evaluator) == 0
    evaluator.update(model, torch.rand(5, 3, 4, 4), torch.zeros(5, dtype=torch.long))
    evaluator.update(model, torch.rand(2, 3, 4, 4), torch.zeros(2, dtype=torch.long))
    assert images_counted(evaluator) == 7
    assert isinstance(images_counted(evaluator), int)
    assert int(evaluator.total) == 7  # counting leaves the state as it was


def test_images_counted_takes_the_largest_entry_of_a_total_vector() -> None:
    evaluator = CleanAccuracy()
    evaluator.total = torch.tensor([3, 9, 4])
    assert images_counted(evaluator) == 9
    evaluator.total = torch.tensor([6])
    assert images_counted(evaluator) == 6


def test_images_counted_sums_the_kept_predictions() -> None:
    evaluator = _PredictionRecorder()
    assert images_counted(evaluator) == 0
    evaluator.update(nn.Identity(), torch.rand(4, 1), torch.arange(4))
    evaluator.update(nn.Identity(), torch.rand(3, 1), torch.arange(3))
    evaluator.predictions.append("not a tensor")
    assert images_counted(evaluator) == 7
    evaluator.total = torch.tensor(11)  # a total, when kept, wins
    assert images_counted(evaluator) == 11
    evaluator.total = torch.zeros(0, dtype=torch.long)  # an empty total does not count
    assert images_counted(evaluator) == 7


def test_images_counted_is_none_without_a_count() -> None:
    evaluator = _PredictionRecorder()
    evaluator.predictions = None
    assert images_counted(evaluator) is None
    evaluator.total = 5  # not a tensor
    assert images_counted(evaluator) is None


class _Settings(Evaluator):
    """An evaluator whose constructor arguments are kept in every way evaluator_settings
    has to handle: plain, private, a tuple, ``None`` kept, not kept, not a plain value."""

    def __init__(self, alpha: float = 0.5, beta: tuple[int, ...] = (1, 2), gamma: str = "g",
                 delta: int | None = None, epsilon: int = 3, zeta: object = None,
                 name: str | None = None) -> None:
        super().__init__(name=name)
        self.alpha = alpha
        self._beta = beta
        self._gamma = gamma
        self.gamma = torch.zeros(1)  # not a plain value: the private one is reported
        self.delta = delta
        self.zeta = nn.Linear(1, 1)
        self.attacks = ["apgd-ce"]

    def update(self, model: nn.Module, x: Tensor, y: Tensor) -> None:  # type: ignore[override]
        """Nothing to count."""

    def compute(self) -> dict[str, float]:
        return {}


def test_evaluator_settings_reports_every_kept_plain_constructor_argument() -> None:
    assert evaluator_settings(_Settings(beta=(4, 5), delta=None, name="mine")) == {
        "class": "_Settings", "name": "mine", "alpha": 0.5, "beta": [4, 5], "gamma": "g",
        "delta": None,
    }
    settings = evaluator_settings(_Settings(alpha=2.0, delta=7))
    assert (settings["name"], settings["alpha"], settings["delta"]) == ("_settings", 2.0, 7)


def test_evaluator_settings_of_the_pgd_and_autoattack_evaluators() -> None:
    attack = PGDAttack(eps=2 / 255, steps=3)
    settings = evaluator_settings(PGDEvaluator(attack=attack))
    assert settings == {"class": "PGDEvaluator", "name": "pgd3_linf_eps0.007843",
                        "attacks": [repr(attack)]}
    flat = evaluator_settings(PGDEvaluator(eps_list=[1 / 255, 2 / 255], steps=2, name="sweep"))
    assert flat["attacks"] == [repr(a) for a in PGDEvaluator(eps_list=[1 / 255, 2 / 255],
                                                                steps=2).attacks]
    assert flat["name"] == "sweep"
    aa = evaluator_settings(AutoAttackEvaluator(norm="L2", eps=0.5, seed=3, batch_size=16))
    assert aa == {"class": "AutoAttackEvaluator", "name": "autoattack_standard_l2_eps0.5",
                  "norm": "L2", "eps": 0.5, "version": "standard", "batch_size": 16,
                  "seed": 3, "verbose": False}


def test_counts_are_summed_over_the_processes(tmp_path: Path) -> None:
    """Under DDP the count is all-reduced (a one-process gloo group: the sum is the count)."""
    evaluator = _PredictionRecorder()
    evaluator.update(nn.Identity(), torch.rand(3, 1), torch.arange(3))
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}",
                                         rank=0, world_size=1)
    try:
        assert images_counted(evaluator) == 3
        clean = CleanAccuracy()
        clean.total = torch.tensor(5)
        assert images_counted(clean) == 5
        assert int(clean.total) == 5  # the state itself is not reduced in place
    finally:
        torch.distributed.destroy_process_group()


def test_test_data_is_the_datamodule_description() -> None:
    description = {"dataset": "CIFAR10", "images": 100}
    datamodule = SimpleNamespace(describe_test_data=lambda: dict(description))
    assert provenance.test_data(_module(datamodule=datamodule)) == description
    not_callable = SimpleNamespace(describe_test_data="text")
    assert provenance.test_data(_module(datamodule=not_callable)) is None
    assert provenance.test_data(_module(datamodule=SimpleNamespace())) is None
    assert provenance.test_data(_module(datamodule=None)) is None
    assert provenance.test_data(SimpleNamespace(trainer=SimpleNamespace())) is None
