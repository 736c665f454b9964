"""A guard against catastrophic overfitting of fast adversarial training, for any method.

Wong, Rice and Kolter ("Fast is better than free", ICLR 2020, §5) observed that single-step
adversarial training can collapse within an epoch or two: accuracy under PGD falls to about
zero while accuracy under FGSM rises (the model has learned to mask the one-step gradient).
Their remedy is early stopping on PGD accuracy measured on a few images: stop when it drops
sharply and keep the weights from before the drop. Andriushchenko and Flammarion (NeurIPS
2020, §3) characterize the collapse by the same two curves.

:class:`CatastrophicOverfittingGuard` does this on a fixed batch of **held-out** images (the
first images of the DataModule's validation split; Wong et al. used a training batch). After
every training epoch, or every ``every_n_steps`` optimizer steps, it measures clean, FGSM and
PGD accuracy there in eval mode, with the random starts drawn from a fixed seed so that
successive checks attack alike and training's random stream is untouched. A check is a
*collapse* when PGD accuracy is more than ``max_drop`` below the best seen so far and (with
``require_fgsm_rise``) FGSM accuracy is higher than at the last good check. On a collapse the
guard loads the weights of the last good check back bit for bit (parameters and buffers, the
whole LightningModule state), stops training, and says so (a warning, the logger's
``guard/*`` metrics, :attr:`CatastrophicOverfittingGuard.events`, and the checkpoint). The
check runs at the end of the last training batch of the epoch, before validation and before
the epoch's checkpoint, so both see the restored weights.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor, nn

from lit_robust.attacks import PGDAttack, pgd
from lit_robust.errors import ConfigurationError
from lit_robust.models.modes import eval_mode

Batch = tuple[Tensor, Tensor]


class CatastrophicOverfittingGuard(Callback):
    """Detect catastrophic overfitting on held-out images and restore the last good weights.

    Add it to any method's run: ``trainer.callbacks: [{class_path:
    lit_robust.callbacks.CatastrophicOverfittingGuard}]`` in a config, or
    ``--trainer.callbacks+=lit_robust.callbacks.CatastrophicOverfittingGuard`` on the command
    line, or ``Trainer(callbacks=[CatastrophicOverfittingGuard()])``.

    Args:
        num_images: held-out images to measure on (the first of the validation split).
        attack: the PGD attack; ``None`` uses PGD-10 at the budget of the method's
            ``val_attack`` (L∞ 8/255 when it has none). Restarts count as in the evaluators.
        every_n_steps: check every this many optimizer steps; ``None`` checks once per epoch,
            after its last training batch.
        max_drop: a fall of PGD accuracy of more than this below the best check so far (in
            [0, 1]; 0.2 as Wong et al.'s early stopping) is a collapse.
        require_fgsm_rise: also require FGSM accuracy above the last good check's (the
            collapse's signature); ``False`` decides on the PGD drop alone, as Wong et al.
        seed: seed of the attack's random starts (the same at every check).

    Raises:
        ValueError: for ``num_images < 1``, ``every_n_steps < 1`` or ``max_drop`` outside
            (0, 1).
        ConfigurationError: at the start of ``fit``, when the data has no validation split.
    """

    def __init__(
        self,
        num_images: int = 512,
        attack: PGDAttack | None = None,
        every_n_steps: int | None = None,
        max_drop: float = 0.2,
        require_fgsm_rise: bool = True,
        seed: int = 0,
    ) -> None:
        if num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1 or null (once per epoch), got "
                             f"{every_n_steps}")
        if not 0 < max_drop < 1:
            raise ValueError(f"max_drop must lie in (0, 1) (a fall in accuracy), got {max_drop}")
        self.num_images = num_images
        self.attack = attack
        self.every_n_steps = every_n_steps
        self.max_drop = max_drop
        self.require_fgsm_rise = require_fgsm_rise
        self.seed = seed
        self.history: list[dict[str, float]] = []
        self.events: list[dict[str, Any]] = []
        self._held_out: list[Batch] = []
        self._best_pgd: float | None = None
        self._good: dict[str, Any] | None = None
        self._last_checked_step = -1

    # ------------------------------------------------------------------ set-up
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        with torch.random.fork_rng(devices=[]):  # a loader's iterator draws a seed
            batches = self._held_out_batches(trainer)
        if not batches:
            raise ConfigurationError(
                "CatastrophicOverfittingGuard needs held-out images, but the data has no "
                "validation split: set data.init_args.val_size > 0 (e.g. 1000), or remove the "
                "guard"
            )
        self._held_out = batches

    def _held_out_batches(self, trainer: Trainer) -> list[Batch]:
        """The first ``num_images`` images of the DataModule's validation split, on the CPU."""
        datamodule = getattr(trainer, "datamodule", None)
        try:
            loader = datamodule.val_dataloader() if datamodule is not None else None
        except MisconfigurationException:  # a DataModule without a validation loader
            loader = None
        if not loader:
            return []
        batches, count = [], 0
        for batch in loader:
            x, y = batch[0], batch[1]
            take = min(self.num_images - count, y.shape[0])
            batches.append((x[:take].clone(), y[:take].clone()))
            count += take
            if count >= self.num_images:
                break
        return batches

    def _pgd_attack(self, pl_module: LightningModule) -> PGDAttack:
        if self.attack is not None:
            return self.attack
        budget = getattr(pl_module, "val_attack", None) or PGDAttack()
        return PGDAttack(eps=budget.eps, steps=10, norm=budget.norm)

    # ------------------------------------------------------------------ when to check
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if self.every_n_steps is not None:
            due = step > 0 and step % self.every_n_steps == 0
        else:
            due = batch_idx + 1 == trainer.num_training_batches
        if due and step != self._last_checked_step:
            self._last_checked_step = step
            self.check(trainer, pl_module)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Check an epoch whose last batch was not seen as such (an iterable dataset of
        unknown length); the usual check runs at that batch, before validation."""
        step = trainer.global_step
        if self.every_n_steps is None and step != self._last_checked_step and step > 0:
            self._last_checked_step = step
            self.check(trainer, pl_module)

    # ------------------------------------------------------------------ the check
    def measure(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, float]:
        """Clean, FGSM (zero start, step ε) and PGD accuracy on the held-out images."""
        model = _classifier(pl_module)
        attack = self._pgd_attack(pl_module)
        device = pl_module.device
        correct = torch.zeros(3, dtype=torch.long)
        total = 0
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), eval_mode(model), torch.enable_grad():
            torch.manual_seed(self.seed)
            for x, y in self._held_out:
                x = trainer.precision_plugin.convert_input(x.to(device))
                y = y.to(device)
                x_fgsm = pgd(model, x, y, eps=attack.eps, step_size=attack.eps, steps=1,
                             norm=attack.norm, random_start=False)
                x_pgd = attack(model, x, y)
                with torch.no_grad():
                    for row, images in enumerate((x, x_fgsm, x_pgd)):
                        correct[row] += int((model(images).argmax(1) == y).sum())
                total += y.shape[0]
        clean, fgsm, robust = (float(c) / total for c in correct)
        return {"clean_acc": clean, "fgsm_acc": fgsm, "pgd_acc": robust,
                "epoch": trainer.current_epoch, "step": trainer.global_step}

    def check(self, trainer: Trainer, pl_module: LightningModule) -> bool:
        """Measure; on a collapse restore the last good weights and stop. Returns whether it
        collapsed."""
        record = self.measure(trainer, pl_module)
        collapsed = self._is_collapse(record)
        collapsed = bool(trainer.strategy.broadcast(collapsed, src=0))
        record["collapse"] = float(collapsed)
        self.history.append(record)
        for logger in trainer.loggers:
            logger.log_metrics({f"guard/{k}": v for k, v in record.items()
                                if k not in ("epoch", "step")}, step=trainer.global_step)
        if collapsed:
            self._restore(trainer, pl_module, record)
        else:
            self._best_pgd = max(self._best_pgd or 0.0, record["pgd_acc"])
            self._good = {"record": record, "state": _copy_state(pl_module)}
        return collapsed

    def _is_collapse(self, record: dict[str, float]) -> bool:
        if self._good is None or self._best_pgd is None:
            return False
        fell = record["pgd_acc"] < self._best_pgd - self.max_drop
        rose = record["fgsm_acc"] > self._good["record"]["fgsm_acc"]
        return fell and (rose or not self.require_fgsm_rise)

    def _restore(self, trainer: Trainer, pl_module: LightningModule,
                 record: dict[str, float]) -> None:
        good = self._good["record"]
        pl_module.load_state_dict(self._good["state"])
        trainer.should_stop = True
        event = {"detected_at": {"epoch": record["epoch"], "step": record["step"]},
                 "restored": {"epoch": good["epoch"], "step": good["step"]},
                 "pgd_acc": [good["pgd_acc"], record["pgd_acc"]],
                 "fgsm_acc": [good["fgsm_acc"], record["fgsm_acc"]],
                 "best_pgd_acc": self._best_pgd}
        self.events.append(event)
        rank_zero_warn(
            f"catastrophic overfitting at epoch {record['epoch']}, step {record['step']}: PGD "
            f"accuracy on {self.num_images} held-out images fell from {good['pgd_acc']:.3f} "
            f"(best {self._best_pgd:.3f}) to {record['pgd_acc']:.3f} while FGSM accuracy went "
            f"from {good['fgsm_acc']:.3f} to {record['fgsm_acc']:.3f}; restored the weights of "
            f"epoch {good['epoch']}, step {good['step']} and stopped training"
        )

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        # A checkpoint written right after a restoration holds the weights of an earlier
        # step: say which (the robustness report names them).
        if self.events and self.events[-1]["detected_at"]["step"] == trainer.global_step:
            checkpoint["weights_from"] = dict(self.events[-1]["restored"])

    def state_dict(self) -> dict[str, Any]:
        """History, events, the best PGD accuracy and the last good weights (for resuming)."""
        return {"history": self.history, "events": self.events, "best_pgd": self._best_pgd,
                "good": self._good, "last_checked_step": self._last_checked_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
        self.events = list(state_dict.get("events", []))
        self._best_pgd = state_dict.get("best_pgd")
        self._good = state_dict.get("good")
        self._last_checked_step = state_dict.get("last_checked_step", -1)


def _classifier(pl_module: LightningModule) -> nn.Module:
    """The network to attack: a method's ``model`` (``Normalize ∘ backbone``) or the module."""
    model = getattr(pl_module, "model", None)
    return model if isinstance(model, nn.Module) else pl_module


def _copy_state(pl_module: LightningModule) -> dict[str, Tensor]:
    """A detached copy of the module's whole state (parameters and buffers), on the CPU."""
    return {key: value.detach().to("cpu", copy=True)
            for key, value in pl_module.state_dict().items()}
