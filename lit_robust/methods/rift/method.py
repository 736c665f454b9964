"""RiFT: robust critical fine-tuning in one ``lit-robust fit``.

Zhu et al., "Improving Generalization of Adversarial Training via Robust Critical
Fine-Tuning", ICCV 2023. Starting from an adversarially trained model θ_AT:

1. ``on_fit_start``: the module robust criticality (MRC) of every Conv2d / Linear on
   adversarial examples of the held-out validation split
   (:mod:`lit_robust.methods.rift.criticality`); the least critical module is chosen (under
   DDP by process 0, which sends the table and the choice to the others);
2. training: that module's weight (and bias) is fine-tuned on clean data, every other
   parameter frozen and the frozen layers' BatchNorm in eval mode;
3. ``on_train_end``: θ(α) = (1 − α)·θ_AT + α·θ_FT is evaluated on the validation split for
   every α, the α of best clean accuracy whose robust accuracy stays within ``alpha_tolerance``
   points of θ_AT's is selected and its weights are loaded, logged and checkpointed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies import DDPStrategy
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from lit_robust.attacks import PGDAttack
from lit_robust.methods.base import RobustClassifier
from lit_robust.methods.optim import ScheduleName
from lit_robust.methods.rift.cache import fingerprint, load_table, store_table
from lit_robust.methods.rift.criticality import (
    CriticalityRow,
    generate_adversarial_set,
    module_robust_criticality,
    rank_modules,
    resolve_modules,
)
from lit_robust.methods.rift.figures import criticality_figure, interpolation_figure
from lit_robust.methods.rift.interpolation import interpolate_state_dicts, select_alpha
from lit_robust.models.modes import eval_mode
from lit_robust.models.surgery import get_head
from lit_robust.progress import trainer_shows_progress

FinetuneScope = Literal["least_critical", "top_k_least", "all", "last_layer", "most_critical"]
ALPHAS = tuple(round(0.1 * i, 1) for i in range(11))
FINAL_CHECKPOINT = "rift_final.ckpt"
SUMMARY_FILE = "rift_summary.json"
SWEEP_SEED = 0

Batch = tuple[Tensor, Tensor]


class RiFT(RobustClassifier):
    """Robust critical fine-tuning (Zhu et al., ICCV 2023).

    Start it from an adversarially trained model (``pretrained``: a Lightning checkpoint of
    ``AdversarialTraining`` / ``TRADES`` or a plain state dict) and give the DataModule a
    validation split (``val_size > 0``): the MRC search and the choice of α use it, never the
    test split. After ``fit`` the model holds the interpolated weights θ(α*); so do
    ``rift_final.ckpt`` and ``last.ckpt`` in the checkpoint folder (checkpoints named after an
    epoch hold the fine-tuned weights θ_FT of that epoch). The chosen modules, the MRC table,
    θ_AT of the fine-tuned entries, the sweep and α* are stored in every checkpoint under
    ``"rift"``.

    Args:
        finetune: what to fine-tune: ``least_critical`` (RiFT), ``top_k_least`` (the ``top_k``
            least critical modules), ``most_critical``, ``last_layer`` (the classifier) or
            ``all`` (every parameter, BatchNorm included) — the paper's ablations.
        module: fine-tune this module (name relative to the backbone, e.g.
            ``layer4.1.conv2``) and skip the MRC search; only with ``least_critical``.
        top_k: number of modules for ``top_k_least``.
        mrc_epsilon: relative radius ε of the MRC weight perturbation.
        mrc_epochs: gradient-ascent passes of the MRC search.
        mrc_lr: gradient-ascent step size.
        mrc_batch_size: batch size of the MRC search.
        mrc_project_every_step: project the perturbation after every step, not per pass.
        mrc_samples: validation images for the MRC search (``None``: all).
        mrc_attack: attack that makes the adversarial set (default PGD-10, L∞ 8/255, step
            2/255).
        mrc_cache: JSON file that stores MRC tables by a fingerprint of weights, images and
            settings, and is read before searching.
        mrc_reuse_prefix: reuse the computation before each module during the search.
        alphas: interpolation weights to evaluate; must contain 0.
        alpha_tolerance: allowed robust-accuracy drop in percentage points (the paper's 0.1).
        interpolation_attack: attack of the α sweep (default: ``val_attack``, else PGD-10,
            L∞ 8/255, step 2/255); each α is attacked with the same random starts.
        sweep_samples: validation images for the α sweep (``None``: all).
        bn_train_mode: keep every BatchNorm in train mode while fine-tuning, as the paper's
            code does (frozen layers' running statistics then change too and are interpolated).
        save_final_checkpoint: write ``rift_final.ckpt`` and rewrite ``last.ckpt`` after the
            interpolation.
        lr: fine-tuning learning rate (paper: 1e-3).
        momentum: SGD momentum (paper: 0.9).
        weight_decay: weight decay (paper: 5e-4).
        schedule: learning-rate schedule (paper: multistep).
        milestones: epochs of the learning-rate decays (paper: ×0.1 at epoch 5 of 10).
        gamma: decay factor.
        **kwargs: the other arguments of :class:`~lit_robust.methods.base.RobustClassifier`.
    """

    keeps_source_layers = True

    def __init__(
        self,
        finetune: FinetuneScope = "least_critical",
        module: str | None = None,
        top_k: int = 2,
        mrc_epsilon: float = 0.1,
        mrc_epochs: int = 10,
        mrc_lr: float = 1.0,
        mrc_batch_size: int = 128,
        mrc_project_every_step: bool = False,
        mrc_samples: int | None = None,
        mrc_attack: PGDAttack | None = None,
        mrc_cache: str | None = None,
        mrc_reuse_prefix: bool = True,
        alphas: Sequence[float] = ALPHAS,
        alpha_tolerance: float = 0.1,
        interpolation_attack: PGDAttack | None = None,
        sweep_samples: int | None = None,
        bn_train_mode: bool = False,
        save_final_checkpoint: bool = True,
        lr: float = 1e-3,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        schedule: ScheduleName = "multistep",
        milestones: Sequence[float] | None = (5,),
        gamma: float = 0.1,
        **kwargs: Any,
    ) -> None:  # pragma: no mutate block (save_hyperparameters reads the signature)
        super().__init__(lr=lr, momentum=momentum, weight_decay=weight_decay, schedule=schedule,
                         milestones=milestones, gamma=gamma, **kwargs)
        scopes = ("least_critical", "top_k_least", "all", "last_layer", "most_critical")
        if finetune not in scopes:
            raise ValueError(f"finetune must be one of {scopes}, got {finetune!r}")
        if module is not None and finetune != "least_critical":
            raise ValueError(f"module={module!r} names the module to fine-tune; it only goes with "
                             f"finetune='least_critical', not {finetune!r}")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        for name, value in (("mrc_samples", mrc_samples), ("sweep_samples", sweep_samples)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        if any(not 0.0 <= a <= 1.0 for a in alphas) or 0.0 not in [float(a) for a in alphas]:
            raise ValueError(f"alphas must lie in [0, 1] and contain 0, got {list(alphas)}")
        if alpha_tolerance < 0:
            raise ValueError(f"alpha_tolerance must be >= 0 points, got {alpha_tolerance}")
        self.mrc_attack = mrc_attack if mrc_attack is not None else PGDAttack()
        self.interpolation_attack = interpolation_attack
        self.finetuned_modules: list[str] | None = None
        self.mrc_table: list[CriticalityRow] | None = None
        self.alpha: float | None = None
        self.sweep: list[dict[str, float]] | None = None
        self._base_state: dict[str, Tensor] | None = None
        self._frozen_bns: list[_BatchNorm] = []

    # ------------------------------------------------------------------ step 1: MRC search
    def on_fit_start(self) -> None:
        self._held_out_loader()  # fail early without a validation split
        restored = self.finetuned_modules is not None
        if not restored:
            self._search_on_first_process()
        self._freeze()
        if self._base_state is None:
            self._base_state = {k: v.detach().clone() for k, v in self._mutable_state().items()}
        if not restored:  # a restored run's optimizer already holds only these parameters
            self._wrap_ddp_again()
            self.trainer.strategy.setup_optimizers(self.trainer)
        self._log_search()

    def _search_on_first_process(self) -> None:
        """Run the MRC search and the module choice in process 0 only; send them to the others.

        The other processes wait for the result: under DDP the process group's timeout (30
        minutes by default) must exceed the search; an ``mrc_cache`` hit makes it quick.
        """
        trainer = self.trainer
        result = None
        if trainer.is_global_zero:
            self.mrc_table = self._criticality_table() if self._needs_search() else None
            result = (self.mrc_table, self._choose_modules())
        self.mrc_table, self.finetuned_modules = trainer.strategy.broadcast(result, src=0)

    def _wrap_ddp_again(self) -> None:
        """Wrap the model in a new ``DistributedDataParallel`` after freezing.

        DDP expects a gradient for every parameter that was trainable when it wrapped the
        model, before ``on_fit_start``, and stops at the second training step when the frozen
        ones get none. (A restored run freezes when its checkpoint is loaded, before the model
        is wrapped.)
        """
        strategy = self.trainer.strategy
        if isinstance(strategy, DDPStrategy) and strategy.model is not self:
            strategy.model = self
            strategy.configure_ddp()

    def _needs_search(self) -> bool:
        return self.hparams.module is None and self.hparams.finetune in (
            "least_critical", "top_k_least", "most_critical")

    def _held_out_loader(self) -> Iterable[Batch]:
        datamodule = getattr(self.trainer, "datamodule", None)
        loader = datamodule.val_dataloader() if datamodule is not None else None
        if not loader:
            raise ValueError(
                "RiFT chooses the module and α on a held-out validation split, but the data "
                "has none; train with a DataModule that holds out images (data.val_size > 0)"
            )
        return loader

    def _held_out_batches(self, limit: int | None) -> Iterator[Batch]:
        """Validation batches with at most ``limit`` images in all (one batch in fast_dev_run)."""
        loader = self._held_out_loader()
        if self.trainer.fast_dev_run:
            limit = min(limit or 2**62, getattr(loader, "batch_size", None) or 1)
        seen = 0
        for x, y in loader:
            if limit is not None:
                x, y = x[: limit - seen], y[: limit - seen]
            if len(y) == 0:
                break
            seen += len(y)
            yield x, y
        if seen == 0:
            raise ValueError("the validation split is empty; raise data.val_size")

    def _criticality_table(self) -> list[CriticalityRow]:
        hp = self.hparams
        batches = list(self._held_out_batches(hp.mrc_samples))
        settings = {
            "epsilon": hp.mrc_epsilon, "epochs": hp.mrc_epochs, "lr": hp.mrc_lr,
            "batch_size": hp.mrc_batch_size, "project_every_step": hp.mrc_project_every_step,
            "attack": repr(self.mrc_attack),
        }
        key = None
        if hp.mrc_cache is not None and not self.trainer.fast_dev_run:
            images = torch.cat([x for x, _ in batches])
            labels = torch.cat([y for _, y in batches])
            key = fingerprint(self.model, [images, labels], settings)
            cached = load_table(hp.mrc_cache, key)
            if cached is not None:
                return cached
        adv_inputs, labels = generate_adversarial_set(self.model, batches, self.mrc_attack)
        rows = module_robust_criticality(
            self.model, adv_inputs, labels, epsilon=hp.mrc_epsilon, epochs=hp.mrc_epochs,
            lr=hp.mrc_lr, batch_size=hp.mrc_batch_size,
            project_every_step=hp.mrc_project_every_step, reuse_prefix=hp.mrc_reuse_prefix,
            progress=trainer_shows_progress(self.trainer),
        )
        if key is not None:
            store_table(hp.mrc_cache, key, rows, settings)
        return rows

    def _choose_modules(self) -> list[str]:
        hp = self.hparams
        net = self.model.net
        if hp.module is not None:
            return resolve_modules(self.model, [hp.module])
        if hp.finetune == "all":
            return [name for name, m in net.named_modules()
                    if any(True for _ in m.parameters(recurse=False))]
        if hp.finetune == "last_layer":
            return [get_head(net)[0]]
        assert self.mrc_table is not None
        k = hp.top_k if hp.finetune == "top_k_least" else 1
        return rank_modules(self.mrc_table, k, most=hp.finetune == "most_critical")

    # ------------------------------------------------------------------ step 2: fine-tuning
    def _trainable_names(self) -> set[str]:
        """State-dict keys (relative to ``self.model``) of the fine-tuned parameters."""
        names = set()
        for module_name in self.finetuned_modules or []:
            module = self.model.net.get_submodule(module_name)
            prefix = f"net.{module_name}." if module_name else "net."
            names |= {prefix + n for n, _ in module.named_parameters(recurse=False)}
        return names

    def _training_bn_names(self) -> list[str]:
        """Names (relative to ``self.model.net``) of the BatchNorms that train."""
        chosen = set(self.finetuned_modules or [])
        return [name for name, m in self.model.net.named_modules()
                if isinstance(m, _BatchNorm) and (self.hparams.bn_train_mode or name in chosen)]

    def _freeze(self) -> None:
        trainable = self._trainable_names()
        for name, param in self.model.named_parameters():
            param.requires_grad_(name in trainable)
        training = set(self._training_bn_names())
        self._frozen_bns = [m for name, m in self.model.net.named_modules()
                            if isinstance(m, _BatchNorm) and name not in training]

    def _mutable_state(self) -> dict[str, Tensor]:
        """The state entries fine-tuning can change: trainable parameters, training BN buffers."""
        keys = self._trainable_names()
        for name in self._training_bn_names():
            keys |= {f"net.{name}.{b}" for b, _ in
                     self.model.net.get_submodule(name).named_buffers(recurse=False)}
        state = self.model.state_dict(keep_vars=False)
        return {k: state[k] for k in sorted(keys)}

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        for bn in self._frozen_bns:
            bn.eval()

    # ------------------------------------------------------------------ step 3: interpolation
    def on_train_end(self) -> None:
        hp = self.hparams
        finetuned = {k: v.detach().clone() for k, v in self._mutable_state().items()}
        base = {k: v.to(finetuned[k].device) for k, v in (self._base_state or {}).items()}
        alphas = sorted({float(a) for a in hp.alphas})
        clean_accs, robust_accs = [], []
        for alpha in alphas:
            self._assign(interpolate_state_dicts(base, finetuned, alpha))
            clean, robust = self._accuracies(self._held_out_batches(hp.sweep_samples))
            clean_accs.append(clean)
            robust_accs.append(robust)
        alpha = select_alpha(alphas, clean_accs, robust_accs, hp.alpha_tolerance)
        sweep = [{"alpha": a, "clean_acc": c, "robust_acc": r}
                 for a, c, r in zip(alphas, clean_accs, robust_accs, strict=True)]
        self.alpha, self.sweep = self.trainer.strategy.broadcast((alpha, sweep), src=0)
        self._assign(interpolate_state_dicts(base, finetuned, self.alpha))
        self._log_sweep()
        self._write_outputs()

    def _assign(self, state: dict[str, Tensor]) -> None:
        current = self.model.state_dict(keep_vars=False)
        with torch.no_grad():
            for key, value in state.items():
                current[key].copy_(value)

    def _accuracies(self, batches: Iterable[Batch]) -> tuple[float, float]:
        """Clean and robust accuracy (robust: correct clean and under attack) of the model."""
        attack = self.interpolation_attack or self.val_attack or PGDAttack()
        correct = robust = total = 0
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), eval_mode(self.model):
            torch.manual_seed(SWEEP_SEED)
            for x, y in batches:
                x, y = x.to(self.device), y.to(self.device)
                with torch.no_grad():
                    clean_ok = self.model(x).argmax(dim=1) == y
                with torch.enable_grad():
                    x_adv = attack(self.model, x, y)
                with torch.no_grad():
                    adv_ok = self.model(x_adv).argmax(dim=1) == y
                correct += int(clean_ok.sum())
                robust += int((clean_ok & adv_ok).sum())
                total += len(y)
        return correct / total, robust / total

    # ------------------------------------------------------------------ logs and checkpoints
    def summary(self) -> dict[str, Any]:
        """The run's RiFT record: modules, α, sweep and MRC table (plain JSON types)."""
        return {
            "finetune": self.hparams.finetune,
            "modules": self.finetuned_modules,
            "alpha": self.alpha,
            "alpha_tolerance_points": self.hparams.alpha_tolerance,
            "sweep": self.sweep,
            "mrc_table": [row.to_dict() for row in self.mrc_table] if self.mrc_table else None,
        }

    def _log_search(self) -> None:
        if self.logger is None:
            return
        if self.mrc_table:
            self.logger.log_metrics({f"rift/mrc/{r.module}": r.mrc for r in self.mrc_table}, 0)
        if isinstance(self.logger, TensorBoardLogger):
            text = ", ".join(self.finetuned_modules or [])
            self.logger.experiment.add_text("rift/finetuned_modules", text, 0)
            if self.mrc_table:
                figure = criticality_figure(self.mrc_table, self.finetuned_modules or [])
                self.logger.experiment.add_figure("rift/mrc_per_module", figure, 0)

    def _log_sweep(self) -> None:
        if self.logger is None:
            return
        for i, point in enumerate(self.sweep or []):
            self.logger.log_metrics({"rift/sweep/clean_acc": point["clean_acc"],
                                     "rift/sweep/robust_acc": point["robust_acc"],
                                     "rift/sweep/alpha": point["alpha"]}, i)
        self.logger.log_metrics({"rift/alpha": float(self.alpha)}, self.global_step)
        if isinstance(self.logger, TensorBoardLogger):
            sweep = self.sweep or []
            figure = interpolation_figure(
                [p["alpha"] for p in sweep], [p["clean_acc"] for p in sweep],
                [p["robust_acc"] for p in sweep], float(self.alpha), self.hparams.alpha_tolerance,
            )
            self.logger.experiment.add_figure("rift/interpolation", figure, self.global_step)
            self.logger.experiment.add_text(
                "rift/summary", f"```\n{json.dumps(self.summary(), indent=1)}\n```",
                self.global_step)

    def _write_outputs(self) -> None:
        """``rift_summary.json`` in the log folder; ``rift_final.ckpt`` and a new ``last.ckpt``.

        A ``last.ckpt`` that a checkpoint callback wrote before the interpolation (at the end
        of the last epoch, or at the end of a ``fast_dev_run``) is rewritten, so that it holds
        the final weights too.
        """
        trainer = self.trainer
        callbacks = [c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)]
        log_dir = trainer.log_dir if self.logger is not None else None
        if not trainer.fast_dev_run:
            if log_dir is not None and trainer.is_global_zero:
                Path(log_dir).mkdir(parents=True, exist_ok=True)
                (Path(log_dir) / SUMMARY_FILE).write_text(json.dumps(self.summary(), indent=1))
            folder = callbacks[0].dirpath if callbacks and callbacks[0].dirpath else log_dir
            if self.hparams.save_final_checkpoint and folder is not None:
                trainer.save_checkpoint(str(Path(folder) / FINAL_CHECKPOINT))
        if not self.hparams.save_final_checkpoint:
            return
        for callback in callbacks:
            last = callback.last_model_path
            if last:
                if Path(last).is_symlink() and trainer.is_global_zero:
                    Path(last).unlink()
                trainer.save_checkpoint(last)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rift"] = {
            **self.summary(),
            "base_state": {k: v.detach().cpu() for k, v in (self._base_state or {}).items()},
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the chosen modules, θ_AT and the sweep, and freeze the other parameters
        before the optimizer is built, so that a resumed fit restores its optimizer state."""
        super().on_load_checkpoint(checkpoint)
        record = checkpoint.get("rift")
        if record is None:
            return
        self.finetuned_modules = record.get("modules")
        table = record.get("mrc_table")
        self.mrc_table = [CriticalityRow.from_dict(r) for r in table] if table else None
        self.alpha = record.get("alpha")
        self.sweep = record.get("sweep")
        self._base_state = dict(record.get("base_state") or {}) or None
        if self.finetuned_modules is not None and self.model is not None:
            self._freeze()
