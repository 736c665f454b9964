"""The learning-rate rule of the robustness library's fine-tuning loop: decay on a plateau of
the monitored validation accuracy, and stop after the last decay.

Vaishnavi, Eykholt and Rahmati, "A Study of the Effects of Transfer Learning on Adversarial
Robustness" (TMLR 2024), fine-tune with the ``robustness`` library's ``train_model``
(``empirical/robustness/train.py`` of their code) without a step schedule: after every epoch
it validates, keeps the best monitored accuracy so far (robust accuracy when training
adversarially, clean accuracy otherwise), counts the epochs whose accuracy stays below that
best, and after ``patience`` = 30 of them in a row divides the learning rate by 10 and starts
counting again; training ends at the third such plateau, i.e. after two decays.
:class:`PlateauSchedule` is that rule as a Lightning callback, monitoring the held-out
validation split (the official loop monitors the test split, which DESIGN §5 rules out).
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from lit_robust.errors import ConfigurationError


class PlateauSchedule(Callback):
    """Multiply the learning rate by ``factor`` after ``patience`` validations without
    reaching the best monitored accuracy; stop training at plateau number ``decays + 1``.

    An epoch whose value equals the best so far resets the count (the official loop counts
    only values strictly below the best). The decay scales the schedulers' ``base_lrs`` as well
    as the optimizers' current learning rates, so it composes with the per-step schedule of
    :class:`~lit_robust.methods.base.RobustClassifier` (use ``schedule: constant`` for the
    official rule alone). Its state (best value, count, decays) is saved in checkpoints, so a
    resumed run continues the rule.

    Args:
        monitor: the logged metric to watch; ``None`` watches ``val/robust_acc`` when the
            method has a validation attack (adversarial training) and ``val/acc`` otherwise.
        patience: validations in a row below the best before a decay (30 in the study).
        factor: learning-rate multiplier of a decay (0.1).
        decays: decays before training stops at the next plateau (2).

    Raises:
        ValueError: for ``patience < 1``, a ``factor`` outside (0, 1) or ``decays < 0``.
        ConfigurationError: when training starts without validation data or without the
            monitored metric.
    """

    def __init__(self, monitor: str | None = None, patience: int = 30, factor: float = 0.1,
                 decays: int = 2) -> None:
        if patience < 1 or not 0 < factor < 1 or decays < 0:
            raise ValueError(
                f"PlateauSchedule needs patience >= 1, 0 < factor < 1 and decays >= 0; got "
                f"patience={patience}, factor={factor}, decays={decays}"
            )
        self.monitor = monitor
        self.patience = patience
        self.factor = factor
        self.decays = decays
        self.best: float | None = None
        self.wait = 0
        self.decayed = 0

    def monitored(self, pl_module: LightningModule) -> str:
        """The metric watched for ``pl_module``."""
        if self.monitor is not None:
            return self.monitor
        return "val/robust_acc" if getattr(pl_module, "val_attack", None) is not None \
            else "val/acc"

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        batches = trainer.num_val_batches
        if not batches or sum(batches) == 0:
            raise ConfigurationError(
                f"the plateau schedule monitors {self.monitored(pl_module)} on the held-out "
                "validation split, but this run has no validation batches; set "
                "data.init_args.val_size > 0 (and trainer.limit_val_batches > 0)"
            )

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        name = self.monitored(pl_module)
        if name not in trainer.callback_metrics:
            raise ConfigurationError(
                f"the plateau schedule monitors {name}, which validation did not log; logged: "
                f"{sorted(trainer.callback_metrics)}"
            )
        self.step(float(trainer.callback_metrics[name]), trainer)

    def step(self, value: float, trainer: Trainer) -> None:
        """Update the rule with one validation value; decay or stop ``trainer`` when due."""
        self.best = value if self.best is None else max(self.best, value)
        self.wait = self.wait + 1 if value < self.best else 0
        if self.wait < self.patience:
            return
        self.wait = 0
        if self.decayed == self.decays:
            trainer.should_stop = True
            return
        self.decayed += 1
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] *= self.factor
        for config in trainer.lr_scheduler_configs:
            if hasattr(config.scheduler, "base_lrs"):
                config.scheduler.base_lrs = [lr * self.factor
                                             for lr in config.scheduler.base_lrs]

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait, "decayed": self.decayed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict["best"]
        self.wait = state_dict["wait"]
        self.decayed = state_dict["decayed"]
