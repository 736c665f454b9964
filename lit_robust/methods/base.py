"""The shared base of every method: model building, optimization, metrics and evaluation.

A method subclasses :class:`RobustClassifier` and overrides only what its paper changes:
:meth:`make_adversarial` and :meth:`training_loss` for the training objective,
:meth:`transform_model` for model surgery, :meth:`param_groups` for which parameters train,
and Lightning's lifecycle hooks for multi-stage work (DESIGN §4).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn
from torch.utils.data.distributed import DistributedSampler
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from lit_robust.attacks import PGDAttack
from lit_robust.errors import ConfigurationError, NonFiniteLossError
from lit_robust.evaluation import CleanAccuracy, Evaluator, PGDEvaluator, finish_evaluation
from lit_robust.evaluation.base import enable_progress, set_dataset_size
from lit_robust.methods.eps_schedule import check_schedule, epsilon_scale, scaled_budget
from lit_robust.methods.optim import OptimizerName, ScheduleName, build_optimizer, schedule_factor
from lit_robust.models.checkpoint import load_weights, read_normalization
from lit_robust.models.modes import eval_mode
from lit_robust.models.normalize import NormalizedClassifier
from lit_robust.models.peft import ParameterSelection, trainable_parameter_count
from lit_robust.models.zoo import build_backbone
from lit_robust.progress import trainer_shows_progress

Batch = tuple[Tensor, Tensor]


def _takes_indices(attack: Any) -> bool:
    """Whether calling ``attack`` accepts the images' dataset ``indices`` (a
    :class:`PGDAttack` does; an attack of one's own may not)."""
    return "indices" in inspect.signature(attack).parameters


class RobustClassifier(LightningModule):
    """Base LightningModule: a classifier ``Normalize ∘ backbone`` trained on [0, 1] images.

    Attributes:
        keeps_source_layers: whether the method keeps layers of ``pretrained`` as they are
            (frozen blocks or reused BatchNorm statistics), which only compute what they were
            trained to compute on inputs normalized as during pre-training. ``False`` here;
            the transfer methods that freeze or reuse set it.

    Args:
        backbone: a name from :func:`lit_robust.models.zoo.available_backbones`
            (e.g. ``resnet18``, ``wrn_34_10``, ``tv_resnet50``, ``timm/<name>``).
        backbone_kwargs: extra keyword arguments for the backbone constructor.
        num_classes: classes of the task; ``None`` takes them from the DataModule.
        mean: per-channel mean of the model's Normalize; ``None`` takes the DataModule's.
            Use ``[0, 0, 0]`` with ``std: [1, 1, 1]`` for checkpoints trained without
            normalization.
        std: per-channel std of the model's Normalize; ``None`` takes the DataModule's.
        pretrained: path of a checkpoint to start from (plain state dict, Lightning
            checkpoint, or the robust-models-transfer / MadryLab format). When it carries the
            normalization it was trained with (lit_robust, robustness and RobustBench
            checkpoints do), a method that keeps source layers (frozen blocks, reused
            BatchNorm statistics: :attr:`keeps_source_layers`) adopts it when ``mean`` /
            ``std`` are unset and refuses a different one; any other method warns when it
            normalizes differently from its source.
        reset_head: load everything but the classifier from ``pretrained`` and start from a
            new head sized for ``num_classes`` (transfer to another task).
        peft: which parameters train (:mod:`lit_robust.models.peft`: ``LoRA``, ``Adapters``,
            ``BiasOnly``), applied after loading and :meth:`transform_model`; ``None`` trains
            every parameter. The numbers of trainable and of all parameters are logged as
            ``train/trainable_params`` and ``train/total_params``.
        allow_normalization_change: let a method that keeps source layers normalize with
            ``mean`` / ``std`` other than those ``pretrained`` carries (a warning instead of
            an error), for experiments that do so on purpose.
        optimizer: ``sgd``, ``lars`` (large batches, :class:`~lit_robust.methods.optim.LARS`),
            ``adamw`` or ``adam``.
        lr: base learning rate.
        momentum: SGD momentum.
        nesterov: Nesterov momentum.
        weight_decay: weight decay.
        schedule: ``constant``, ``multistep``, ``cosine`` or ``linear`` (decay to 0 after
            the warm-up: the cyclic schedule of fast adversarial training), in epochs,
            applied per step.
        milestones: epochs of the multistep decays (default 50% and 75% of training).
        gamma: multistep decay factor.
        warmup_epochs: linear learning-rate warm-up length in epochs.
        eps_ramp_start_epoch: ε-scheduling of the training attack (methods that have one):
            train with ε = 0 for this many epochs, then ramp ε (and the step size) linearly
            (:mod:`lit_robust.methods.eps_schedule`); logged as ``train/eps``.
        eps_ramp_epochs: length of the linear ramp up to the attack's ε, in epochs (0 with
            ``eps_ramp_start_epoch: 0`` disables the schedule).
        val_attack: attack for robust validation accuracy; ``None`` validates clean only.
        val_attack_batches: attack only the first this-many validation batches.
        evaluators: test-time evaluators (clean, PGD with restarts, AutoAttack, smoothing,
            corruptions); ``None`` uses clean accuracy and PGD-10 with 3 restarts with the
            validation attack's budget.
        channels_last: keep the model in channels-last memory format (faster on GPUs).
        compile_model: compile the model's forward with ``torch.compile`` (in place, with
            :meth:`torch.nn.Module.compile`, so parameter names and checkpoints are those of
            the uncompiled model: a checkpoint loads with or without compilation). A run
            setting, not a hyperparameter: ``test --ckpt_path`` does not inherit it.
        compile_backend: the ``torch.compile`` backend: ``inductor`` (generated kernels; on a
            CPU it needs a C++ compiler) or ``eager`` (graph capture only, to check that the
            model compiles).
        report_dir: where ``test`` writes ``report.json`` / ``report.md``; ``None`` uses the
            logger's directory.
    """

    keeps_source_layers: bool = False

    def __init__(
        self,
        backbone: str = "resnet18",
        backbone_kwargs: dict[str, Any] | None = None,
        num_classes: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        pretrained: str | None = None,
        reset_head: bool = False,
        peft: ParameterSelection | None = None,
        allow_normalization_change: bool = False,
        optimizer: OptimizerName = "sgd",
        lr: float = 0.1,
        momentum: float = 0.9,
        nesterov: bool = False,
        weight_decay: float = 5e-4,
        schedule: ScheduleName = "multistep",
        milestones: Sequence[float] | None = None,
        gamma: float = 0.1,
        warmup_epochs: float = 0.0,
        eps_ramp_start_epoch: float = 0.0,
        eps_ramp_epochs: float = 0.0,
        val_attack: PGDAttack | None = None,
        val_attack_batches: int | None = None,
        evaluators: Sequence[Evaluator] | None = None,
        channels_last: bool = False,
        compile_model: bool = False,
        compile_backend: str = "inductor",
        report_dir: str | None = None,
    ) -> None:  # pragma: no mutate block (save_hyperparameters reads the signature)
        super().__init__()
        if lr <= 0 or weight_decay < 0 or gamma <= 0 or warmup_epochs < 0:
            raise ValueError(
                f"need lr > 0, weight_decay >= 0, gamma > 0 and warmup_epochs >= 0; got lr={lr}, "
                f"weight_decay={weight_decay}, gamma={gamma}, warmup_epochs={warmup_epochs}"
            )
        if val_attack_batches is not None and val_attack_batches < 1:
            raise ValueError(
                f"val_attack_batches must be >= 1 or None (attack every batch), got "
                f"{val_attack_batches}; use val_attack: null to validate clean only"
            )
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither (then the DataModule's are used)")
        check_schedule(eps_ramp_start_epoch, eps_ramp_epochs)
        # Run settings stay out of the hyperparameters: LightningCLI re-applies a checkpoint's
        # hyperparameters over the command line on `test --ckpt_path`.
        self.save_hyperparameters(ignore=["val_attack", "evaluators", "report_dir",
                                          "compile_model", "compile_backend"])
        if compile_model and compile_backend not in torch.compiler.list_backends(exclude_tags=()):
            raise ValueError(f"compile_backend={compile_backend!r} is not a torch.compile backend; "
                             "use 'inductor' (default) or 'eager'")
        self.compile_model = compile_model
        self.compile_backend = compile_backend
        self.report_dir = report_dir
        self.val_attack = val_attack
        self.val_attack_batches = val_attack_batches
        self.peft = peft
        self._evaluators_arg = list(evaluators) if evaluators is not None else None
        self.model: nn.Module | None = None
        self.evaluators = nn.ModuleList()
        self.test_results: dict[str, float] = {}
        self.restored_from: dict[str, int | None] | None = None

    # ------------------------------------------------------------------ model building
    def _resolve(self, key: str) -> Any:
        value = self.hparams.get(key)
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer else None
        data_value = getattr(datamodule, key, None) if datamodule is not None else None
        if key == "num_classes" and value is not None and data_value is not None:
            if int(value) != int(data_value):
                raise ConfigurationError(
                    f"num_classes={value} contradicts the data ({type(datamodule).__name__} has "
                    f"{data_value} classes); drop model.num_classes or fix it"
                )
        if value is None:
            value = data_value
        if value is None:
            raise ConfigurationError(
                f"{key} is unknown: pass model.{key} or train/test with a DataModule that "
                f"defines it"
            )
        if key in ("mean", "std"):
            value = [float(v) for v in value]
        self.hparams[key] = value
        return value

    def configure_model(self) -> None:
        """Build ``Normalize ∘ backbone``, load ``pretrained``, apply :meth:`transform_model`."""
        if self.model is not None:
            return
        num_classes = int(self._resolve("num_classes"))
        load = self.hparams.pretrained is not None and self._load_pretrained()
        source = read_normalization(self.hparams.pretrained) if load else None
        if source is not None and self.hparams.get("mean") is None and self.keeps_source_layers:
            self.hparams["mean"], self.hparams["std"] = source
            rank_zero_info(f"{type(self).__name__} keeps layers of {self.hparams.pretrained}: "
                           f"it normalizes as that checkpoint does, mean={source[0]}, "
                           f"std={source[1]}")
        mean, std = self._resolve("mean"), self._resolve("std")
        if source is not None:
            self._check_source_normalization(source, mean, std)
        net = build_backbone(
            self.hparams.backbone, num_classes=num_classes, **(self.hparams.backbone_kwargs or {})
        )
        if load:
            load_weights(net, self.hparams.pretrained, skip_head=self.hparams.reset_head)
        model = self.transform_model(NormalizedClassifier(net, mean=mean, std=std))
        if self.peft is not None:
            try:
                model = self.peft.apply(model)
            except ValueError as error:  # a selection that does not fit this network
                raise ConfigurationError(f"model.peft: {error}") from error
        if self.hparams.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if self.compile_model:
            model.compile(backend=self.compile_backend)
        self.model = model
        self._build_metrics(num_classes)

    def _check_source_normalization(
        self, source: tuple[list[float], list[float]], mean: list[float], std: list[float]
    ) -> None:
        """Refuse (or warn about) a normalization other than the one ``pretrained`` carries.

        Raises:
            ValueError: when the method keeps source layers, the two differ and
                ``allow_normalization_change`` is off.
        """
        if _same_statistics(source, (mean, std)):
            return
        message = (
            f"{type(self).__name__} would normalize with mean={mean}, std={std}, but "
            f"{self.hparams.pretrained} was trained with mean={source[0]}, std={source[1]}"
        )
        if self.keeps_source_layers and not self.hparams.allow_normalization_change:
            raise ValueError(
                f"{message}, and the layers it keeps from that checkpoint only compute what they "
                "learned on inputs normalized as then; set model.mean / model.std to the "
                "source's (or leave both unset to adopt them), or model."
                "allow_normalization_change: true to mix them on purpose"
            )
        rank_zero_warn(f"{message} (it fine-tunes those layers, so they can adapt)")

    def _load_pretrained(self) -> bool:
        """Whether to load ``pretrained``: not when a checkpoint of this run replaces it anyway.

        Raises:
            FileNotFoundError: the file is missing and nothing else provides the weights.
        """
        if Path(self.hparams.pretrained).is_file():
            return True
        restoring = self._trainer is None or self._trainer.ckpt_path is not None
        if restoring:
            rank_zero_warn(
                f"pretrained checkpoint {self.hparams.pretrained} not found; the weights come "
                "from the checkpoint being restored"
            )
            return False
        raise FileNotFoundError(
            f"pretrained checkpoint not found: {self.hparams.pretrained} (paths are relative to "
            f"the working directory {Path.cwd()})"
        )

    def transform_model(self, model: NormalizedClassifier) -> nn.Module:
        """Model surgery after loading weights (TWINS: dual BN; CARTL: NEFT). Identity here."""
        return model

    def _build_metrics(self, num_classes: int) -> None:
        acc = MetricCollection({"acc": MulticlassAccuracy(num_classes, average="micro")})
        self.train_metrics = acc.clone(prefix="train/")
        self.val_metrics = acc.clone(prefix="val/")
        self.val_robust_acc = MulticlassAccuracy(num_classes, average="micro")
        self.train_loss = MeanMetric()
        evaluators = self._evaluators_arg
        if evaluators is None:
            evaluators = self.default_evaluators()
        self.evaluators = nn.ModuleList(evaluators)

    def default_evaluators(self) -> list[Evaluator]:
        """Clean accuracy and PGD-10 with 3 restarts at the validation attack's budget."""
        attack = self.val_attack or PGDAttack()
        return [
            CleanAccuracy(),
            PGDEvaluator(
                eps=attack.eps, step_size=attack.step_size, steps=max(attack.steps, 10),
                norm=attack.norm, restarts=3,
            ),
        ]

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    # ------------------------------------------------------------------ optimization
    def param_groups(self) -> list[dict[str, Any]] | list[nn.Parameter]:
        """Parameters (or groups) the optimizer updates; all trainable ones by default."""
        return [p for p in self.model.parameters() if p.requires_grad]

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        params = self.param_groups()
        if len(params) == 0:
            raise ValueError(f"{type(self).__name__} has no trainable parameters")
        optimizer = build_optimizer(params, hp.optimizer, hp.lr, hp.momentum, hp.nesterov,
                                    hp.weight_decay)
        max_epochs = self.trainer.max_epochs if self.trainer.max_epochs not in (None, -1) else 1
        steps_per_epoch = max(1, self.trainer.estimated_stepping_batches // max(max_epochs, 1))
        factor = schedule_factor(hp.schedule, max_epochs, hp.milestones, hp.gamma,
                                 hp.warmup_epochs)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: factor(step / steps_per_epoch)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    # ------------------------------------------------------------------ training
    def make_adversarial(self, x: Tensor, y: Tensor) -> Tensor | None:
        """Training inputs to attack with; ``None`` for methods that train on clean data."""
        return None

    def training_loss(self, x: Tensor, x_adv: Tensor | None, y: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(loss, logits used for training accuracy)``; cross-entropy here."""
        logits = self.model(x)
        return F.cross_entropy(logits, y), logits

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        x, y = batch
        if batch_idx == 0 and self.current_epoch == 0:
            check_pixel_range(x)
        with self.scheduled_attack(batch_idx):
            x_adv = self.make_adversarial(x, y)
        loss, logits = self.training_loss(x, x_adv, y)
        check_finite_loss(loss, self.current_epoch, self.global_step, batch_idx)
        self.train_loss(loss.detach())
        self.train_metrics(logits.detach(), y)
        self.log("train/loss", self.train_loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True)
        return loss

    def scheduled_attack(self, batch_idx: int) -> AbstractContextManager[Any]:
        """The training attack's budget at this step under ε-scheduling (a no-op without)."""
        hp = self.hparams
        if hp.get("eps_ramp_start_epoch", 0) == 0 and hp.get("eps_ramp_epochs", 0) == 0:
            return nullcontext()
        progress = self.current_epoch + batch_idx / max(float(self.trainer.num_training_batches), 1)
        scale = epsilon_scale(progress, hp.eps_ramp_start_epoch, hp.eps_ramp_epochs)
        self.log("train/eps", self.attack.eps * scale, on_step=True, on_epoch=False)
        return scaled_budget(self.attack, scale)

    def on_train_start(self) -> None:
        """Log the parameter counts; refuse ε-scheduling for a method without an attack."""
        hp = self.hparams
        scheduled = hp.get("eps_ramp_start_epoch", 0) > 0 or hp.get("eps_ramp_epochs", 0) > 0
        if scheduled and getattr(self, "attack", None) is None:
            raise ConfigurationError(
                f"eps_ramp_start_epoch / eps_ramp_epochs schedule a training attack, and "
                f"{type(self).__name__} trains without one; set both to 0")
        trainable, total = trainable_parameter_count(self.model)
        self.log_dict({"train/trainable_params": float(trainable),
                       "train/total_params": float(total)}, on_step=False, on_epoch=True)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Remember which training state the restored weights are from (for the report): the
        checkpoint's, or the earlier one a callback put back (``weights_from``, e.g.
        :class:`~lit_robust.callbacks.CatastrophicOverfittingGuard`)."""
        self.restored_from = checkpoint.get("weights_from") or {
            "epoch": checkpoint.get("epoch"), "step": checkpoint.get("global_step")}

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Log the learning rate of this optimizer step (the schedule is applied per step)."""
        self.log("train/lr", optimizer.param_groups[0]["lr"], on_step=True, on_epoch=False)

    # ------------------------------------------------------------------ validation
    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        x, y = batch
        positions = self.validation_positions(batch_idx, y.shape[0])
        keep = self.real_validation_images(batch_idx, y.shape[0])
        x, y = x[keep.to(x.device)], y[keep.to(y.device)]
        with eval_mode(self.model):
            # Every process logs every metric, also when its batch holds only padding copies:
            # the epoch-end reduction of a logged metric waits for all processes.
            if y.numel() > 0:
                logits = self.model(x)
                self.val_metrics.update(logits, y)
            self.log_dict(self.val_metrics, prog_bar=True)
            limit = self.val_attack_batches
            if self.val_attack is not None and (limit is None or batch_idx < limit):
                if y.numel() > 0:
                    # per-image random starts (PGDAttack with indices): every validation image
                    # gets the same attack in one process or several, in any batch
                    indices = positions[keep] if positions is not None and _takes_indices(
                        self.val_attack) else None
                    with torch.enable_grad():
                        x_adv = (self.val_attack(self.model, x, y, indices=indices)
                                 if indices is not None else self.val_attack(self.model, x, y))
                    # Robust means correct on x and on x_adv, as the test evaluators count it.
                    clean_pred, adv_pred = logits.argmax(dim=1), self.model(x_adv).argmax(dim=1)
                    self.val_robust_acc.update(
                        torch.where(clean_pred == y, adv_pred, clean_pred), y)
                self.log("val/robust_acc", self.val_robust_acc, prog_bar=True)

    def _validation_loader(self) -> Any:
        loaders = self._trainer.val_dataloaders if self._trainer is not None else None
        if isinstance(loaders, (list, tuple)) and len(loaders) == 1:
            loaders = loaders[0]
        return loaders

    def validation_positions(self, batch_idx: int, count: int) -> Tensor | None:
        """Positions in the validation split of the ``count`` images of validation batch
        ``batch_idx`` (under DDP, of the sampler's padded order, in which the copies lie past
        the end), or ``None`` when the loader does not tell (no fixed batch size)."""
        loader = self._validation_loader()
        batch_size = getattr(loader, "batch_size", None)
        if not batch_size:
            return None
        position = batch_idx * batch_size + torch.arange(count)
        sampler = getattr(loader, "sampler", None)
        if isinstance(sampler, DistributedSampler):
            return sampler.rank + position * sampler.num_replicas
        return position

    def real_validation_images(self, batch_idx: int, count: int) -> Tensor:
        """Mask of the ``count`` images of validation batch ``batch_idx`` that are validation
        images rather than copies padding a DDP shard.

        Under DDP Lightning shards the validation split with a ``DistributedSampler``, which
        pads the last round with copies of the first images so that every process gets as
        many; the copies would count twice in ``val/acc`` and ``val/robust_acc``. The k-th image
        of process r of W is position r + k·W of the padded order, and positions from the
        split's size on are the copies (the test evaluators drop them the same way,
        :mod:`lit_robust.evaluation.base`). Without a distributed sampler every image is real.
        """
        sampler = getattr(self._validation_loader(), "sampler", None)
        positions = self.validation_positions(batch_idx, count)
        if not isinstance(sampler, DistributedSampler) or sampler.drop_last or positions is None:
            return torch.ones(count, dtype=torch.bool)
        return positions < len(sampler.dataset)

    # ------------------------------------------------------------------ predict
    def predict_step(self, batch: Batch | Tensor, batch_idx: int) -> Tensor:
        """Class probabilities of a batch of [0, 1] images (labels, if any, are ignored)."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return torch.softmax(self.model(x).float(), dim=1)

    # ------------------------------------------------------------------ test
    def test_step(self, batch: Batch, batch_idx: int) -> None:
        x, y = batch
        if batch_idx == 0:
            check_pixel_range(x)
        with eval_mode(self.model), torch.enable_grad():
            for evaluator in self.evaluators:
                evaluator.update(self.model, x, y)

    def on_test_epoch_start(self) -> None:
        """Restart the evaluators, tell them the test-set size (DDP padding is dropped) and
        whether to print progress lines (as the trainer's progress bar: on, rank 0 only)."""
        for evaluator in self.evaluators:
            evaluator.reset()
        set_dataset_size(self.evaluators, self.trainer.test_dataloaders)
        enable_progress(self.evaluators, trainer_shows_progress(self.trainer))

    def on_test_epoch_end(self) -> None:
        self.test_results = finish_evaluation(self, list(self.evaluators))


def _same_statistics(
    first: tuple[Sequence[float], Sequence[float]], second: tuple[Sequence[float], Sequence[float]]
) -> bool:
    """Whether two ``(mean, std)`` pairs are the same normalization (one value stands for
    every channel)."""
    width = max(len(first[0]), len(second[0]))

    def expand(pair: tuple[Sequence[float], Sequence[float]]) -> Tensor:
        mean, std = ([float(v) for v in values] for values in pair)
        if len(mean) == 1:
            mean, std = mean * width, std * width
        return torch.tensor([mean, std], dtype=torch.float64)

    a, b = expand(first), expand(second)
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=1e-5, atol=1e-6))


def check_finite_loss(loss: Tensor, epoch: int, step: int, batch_idx: int) -> None:
    """Stop training at the first NaN or infinite loss, saying where and what to try.

    Raises:
        NonFiniteLossError: when ``loss`` is not finite.
    """
    if bool(torch.isfinite(loss.detach()).all()):
        return
    raise NonFiniteLossError(
        f"the training loss is {loss.detach().float().cpu().tolist()} at epoch {epoch}, step "
        f"{step} (batch {batch_idx} of the epoch); training stopped. Try a lower model.lr (or "
        "a longer model.warmup_epochs), trainer.precision 32-true instead of 16-mixed, "
        "trainer.gradient_clip_val 1.0, and check the data for NaN or extreme values"
    )


def check_pixel_range(x: Tensor) -> None:
    """Fail early when a batch is not in [0, 1] (e.g. normalized twice or in 0–255)."""
    low, high = float(x.min()), float(x.max())
    if low < -1e-4 or high > 1 + 1e-4:
        raise ValueError(
            f"input images must be in [0, 1] pixel space, got values in [{low:.3f}, {high:.3f}]; "
            "normalization belongs inside the model (set model.mean / model.std), not in the "
            "data transforms"
        )

