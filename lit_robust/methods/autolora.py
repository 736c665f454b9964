"""AutoLoRa (Xu, Zhang and Kankanhalli, "AutoLoRa: A Parameter-Free Automated Robust
Fine-Tuning Framework", ICLR 2024; official code: GodXuxilie/RobustSSL_Benchmark,
``Finetuning_Methods/AutoLoRa``)."""

from __future__ import annotations

import copy
import itertools
import math
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm

from lit_robust.attacks import PGDAttack
from lit_robust.errors import ConfigurationError
from lit_robust.losses import trades_kl
from lit_robust.methods.adversarial import AdversarialTraining
from lit_robust.methods.auto_lr import AutoLRRule, AutomaticLearningRate
from lit_robust.methods.optim import ScheduleName, build_optimizer
from lit_robust.models.lora import add_lora, lora_enabled, lora_layers, lora_parameters
from lit_robust.models.modes import eval_mode
from lit_robust.models.normalize import NormalizedClassifier
from lit_robust.models.surgery import get_head


def autolora_lambdas(natural_accuracy: float, kl_scale: float = 6.0) -> tuple[float, float]:
    """AutoLoRa's automatic loss weights from the LoRA branch's training accuracy ``a``:
    ``λ1 = 1 − a`` (natural cross-entropy; the adversarial one gets ``1 − λ1 = a``) and
    ``λ2 = kl_scale · a`` (the KL term), Section 4.2 of the paper.

    Raises:
        ValueError: for an accuracy outside [0, 1].
    """
    if not 0.0 <= natural_accuracy <= 1.0:
        raise ValueError(f"the accuracy must be a fraction in [0, 1], got {natural_accuracy}")
    return 1.0 - natural_accuracy, kl_scale * natural_accuracy


class AutoLoRa(AdversarialTraining):
    """Robust fine-tuning with a natural low-rank branch and automatic hyperparameters.

    Every convolution and linear layer of the feature extractor after the stem gets a LoRA
    branch of rank ``rank`` (:mod:`lit_robust.models.lora`; the official code adapts every
    ResNet convolution but the 7×7/3×3 stem, and trains the head directly). Two forward paths
    share the network:

    - the *natural* path ``W + BA`` on clean images, whose loss reaches only the LoRA factors
      and the head (every other parameter is detached on this path; with
      ``natural_trains_bn`` also the normalization layers' affine parameters);
    - the *adversarial* path ``W`` on PGD examples (generated through ``W`` in eval mode),
      whose loss reaches the feature extractor and the head, never the LoRA factors.

    Loss: ``λ1·CE(f_nat(x), y) + (1 − λ1)·CE(f_adv(x'), y) + λ2·KL(f_nat(x) ‖ f_adv(x'))``
    (:func:`~lit_robust.losses.trades_kl`, the official code's ``KLDivLoss(log_softmax(adv),
    softmax(nat))`` summed over classes and averaged over the batch; gradients flow through
    both paths), with ``λ1 = 1 − a`` and ``λ2 = 6·a`` where ``a`` is the natural path's
    accuracy on the training set (a pass in eval mode before the first epoch and after every
    epoch, as the official code). Both paths run in train mode, so BatchNorm statistics see
    clean and adversarial batches in turn.

    The learning rate is automatic (:mod:`lit_robust.methods.auto_lr`): it starts at ``lr``
    (0.01), is checked every 4 epochs against the robust accuracy on the held-out validation
    split (``val/robust_acc``, so training needs ``data.val_size > 0`` and a ``val_attack``), and
    is halved, reloading the best epoch's weights, when progress stalls; training stops below
    1e-5. ``auto_lr: false`` uses the base class's schedule instead.

    Validation, test and deployment use the adversarial path (``W``): the LoRA branch only
    trains the network. :func:`~lit_robust.models.lora.remove_lora` turns a copy of
    ``self.model`` into the plain network.

    Paper settings (defaults): rank 8, LoRA scale 1/8 (``lora_alpha: 1``, ``A ~ N(0, 1)``,
    ``B = 0``), PGD-10 L∞ 8/255 step 2/255, SGD momentum 0.9, weight decay 1e-4, batch 128,
    60 epochs.

    Args:
        rank: r_nat, the rank of the LoRA branches (> 0).
        lora_alpha: the branches are scaled by ``lora_alpha / rank``.
        kl_scale: λ2 = ``kl_scale`` × the natural accuracy (6).
        natural_trains_bn: let the natural loss reach the normalization layers' affine
            parameters too (the official code freezes them on the natural path).
        auto_lr: use the automatic learning rate (otherwise ``schedule`` etc. apply).
        lr: the (initial) learning rate.
        lr_window: epochs between the automatic checks (4).
        lr_rho: the share of improving epochs a window needs (0.75).
        lr_divisor: the divisor of a reduction (2).
        min_lr: training stops below this learning rate (1e-5).
        auto_lr_rule: ``"paper"`` or ``"code"`` (see :mod:`lit_robust.methods.auto_lr`).
        attack: the training attack (PGD-10, L∞ 8/255, step 2/255, random start).
        momentum: SGD momentum.
        weight_decay: weight decay.
        schedule: the schedule when ``auto_lr`` is off (``constant`` otherwise).
        **kwargs: the other arguments of :class:`~lit_robust.methods.base.RobustClassifier`
            (``peft`` excepted: AutoLoRa selects its own parameters).
    """

    def __init__(
        self,
        rank: int = 8,
        lora_alpha: float = 1.0,
        kl_scale: float = 6.0,
        natural_trains_bn: bool = False,
        auto_lr: bool = True,
        lr: float = 0.01,
        lr_window: int = 4,
        lr_rho: float = 0.75,
        lr_divisor: float = 2.0,
        min_lr: float = 1e-5,
        auto_lr_rule: AutoLRRule = "paper",
        attack: PGDAttack | None = None,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        schedule: ScheduleName = "constant",
        **kwargs: Any,
    ) -> None:  # pragma: no mutate block (save_hyperparameters reads the signature)
        if not isinstance(rank, int) or rank <= 0:
            raise ValueError(f"AutoLoRa's rank must be a positive integer, got {rank!r} "
                             "(the paper uses rank: 8)")
        if kl_scale < 0:
            raise ValueError(f"kl_scale must be >= 0, got {kl_scale}")
        if kwargs.get("peft") is not None:
            raise ValueError("AutoLoRa adds its own LoRA branches and routes each loss to its "
                             "parameters; drop model.peft")
        if auto_lr and (schedule != "constant" or kwargs.get("warmup_epochs", 0) > 0):
            raise ValueError(
                f"auto_lr sets the learning rate itself; use schedule: constant and no warm-up "
                f"(got schedule={schedule!r}), or auto_lr: false for a scheduled learning rate"
            )
        super().__init__(attack=attack, lr=lr, momentum=momentum, weight_decay=weight_decay,
                         schedule=schedule, **kwargs)
        self.auto_lr = (AutomaticLearningRate(lr, lr_window, lr_rho, lr_divisor, min_lr,
                                              auto_lr_rule) if auto_lr else None)
        self.rank = rank
        self.lora_alpha = lora_alpha
        self.kl_scale = kl_scale
        self.natural_trains_bn = natural_trains_bn
        self.lambda1, self.lambda2 = autolora_lambdas(0.0, kl_scale)
        self.best_state: dict[str, Tensor] | None = None
        self._val_robust: float | None = None
        self._natural_names: set[str] = set()

    # ------------------------------------------------------------------ model
    def transform_model(self, model: NormalizedClassifier) -> nn.Module:
        """Add the LoRA branches (off by default: the model computes ``W``)."""
        add_lora(model, rank=self.rank, alpha=self.lora_alpha, init_a="normal")
        for layer in lora_layers(model):
            layer.enabled = False
        natural = {id(p) for p in lora_parameters(model)}
        natural |= {id(p) for p in get_head(model)[1].parameters()}
        if self.natural_trains_bn:
            natural |= {id(p) for m in model.modules()
                        if isinstance(m, (_BatchNorm, nn.LayerNorm, nn.GroupNorm))
                        for p in m.parameters(recurse=False)}
        self._natural_names = {name for name, p in model.named_parameters() if id(p) in natural}
        return model

    def natural_logits(self, x: Tensor) -> Tensor:
        """Logits of the natural path ``W + BA``: only the LoRA factors and the head (and the
        normalization layers with ``natural_trains_bn``) receive its gradients."""
        params = {name: p if name in self._natural_names else p.detach()
                  for name, p in self.model.named_parameters()}
        with lora_enabled(self.model, True):
            return functional_call(self.model, params, (x,))

    def adversarial_logits(self, x_adv: Tensor) -> Tensor:
        """Logits of the adversarial path ``W`` (the LoRA branches are off)."""
        with lora_enabled(self.model, False):
            return self.model(x_adv)

    # ------------------------------------------------------------------ training
    def training_loss(self, x: Tensor, x_adv: Tensor | None, y: Tensor) -> tuple[Tensor, Tensor]:
        if x_adv is None:
            raise ValueError("AutoLoRa trains on adversarial examples; make_adversarial "
                             "returned None")
        logits_nat = self.natural_logits(x)
        logits_adv = self.adversarial_logits(x_adv)
        loss = (self.lambda1 * F.cross_entropy(logits_nat, y)
                + (1 - self.lambda1) * F.cross_entropy(logits_adv, y)
                + self.lambda2 * trades_kl(logits_nat, logits_adv))
        return loss, logits_adv

    def configure_optimizers(self) -> Any:
        if self.auto_lr is None:
            return super().configure_optimizers()
        hp = self.hparams
        return build_optimizer(self.param_groups(), hp.optimizer, self.auto_lr.lr, hp.momentum,
                               hp.nesterov, hp.weight_decay)

    def on_train_start(self) -> None:
        """Check that the automatic learning rate can work, then set λ1, λ2 from the initial
        natural accuracy."""
        super().on_train_start()
        if self.auto_lr is not None:
            if self.val_attack is None or sum(self.trainer.num_val_batches) == 0:
                raise ConfigurationError(
                    "AutoLoRa's automatic learning rate follows the robust accuracy on the "
                    "held-out validation split: set data.val_size > 0 (and keep a val_attack), "
                    "or model.auto_lr: false"
                )
            self._set_lr(self.auto_lr.lr)
        if self.current_epoch == 0 and self.global_step == 0:
            self.update_lambdas()

    def update_lambdas(self) -> None:
        """λ1, λ2 from the natural path's accuracy on the training loader (eval mode)."""
        accuracy = self.natural_train_accuracy()
        self.lambda1, self.lambda2 = autolora_lambdas(accuracy, self.kl_scale)
        self.log_dict({"train/natural_branch_acc": accuracy, "train/lambda1": self.lambda1,
                       "train/lambda2": self.lambda2}, on_step=False, on_epoch=True)

    @torch.no_grad()
    def natural_train_accuracy(self) -> float:
        """The natural path's accuracy over this epoch's training batches, in eval mode (the
        same batches Lightning trains on; under DDP summed over the processes)."""
        loader = self.trainer.train_dataloader
        limit = self.trainer.num_training_batches
        batches = loader if not math.isfinite(limit) else itertools.islice(loader, int(limit))
        correct = torch.zeros((), device=self.device)
        total = torch.zeros((), device=self.device)
        with eval_mode(self.model), lora_enabled(self.model, True):
            for batch in batches:
                x, y = self.trainer.strategy.batch_to_device(batch)
                correct += (self.model(x).argmax(dim=1) == y).sum()
                total += y.numel()
        if self.trainer.world_size > 1:
            correct = self.trainer.strategy.reduce(correct, reduce_op="sum")
            total = self.trainer.strategy.reduce(total, reduce_op="sum")
        return float(correct / total.clamp_min(1))

    def on_validation_epoch_end(self) -> None:
        """Remember this epoch's validation robust accuracy for the automatic learning rate."""
        if not self.trainer.sanity_checking and self.val_robust_acc.update_count > 0:
            self._val_robust = float(self.val_robust_acc.compute())

    def on_train_epoch_end(self) -> None:
        """Recompute λ1, λ2, then apply the automatic learning-rate rule to this epoch."""
        self.update_lambdas()
        if self.auto_lr is None:
            return
        if self._val_robust is None:
            raise ConfigurationError(
                f"AutoLoRa measured no validation robust accuracy in epoch {self.current_epoch}; "
                "its automatic learning rate needs validation after every epoch "
                "(trainer.check_val_every_n_epoch: 1, limit_val_batches > 0)"
            )
        decision = self.auto_lr.update(self._val_robust)
        self._val_robust = None
        if decision.new_best:
            self.best_state = copy.deepcopy(self.model.state_dict())
        if decision.reduce:
            self.model.load_state_dict(self.best_state)
            rank_zero_info(f"AutoLoRa, epoch {self.current_epoch}: {decision.reason}; learning "
                           f"rate {self.auto_lr.lr * self.auto_lr.divisor:.3g} -> "
                           f"{self.auto_lr.lr:.3g}, best weights reloaded")
        self._set_lr(self.auto_lr.lr)
        self.log("train/auto_lr_reduced", float(decision.reduce), on_step=False, on_epoch=True)
        if self.auto_lr.finished:
            rank_zero_info(f"AutoLoRa: the learning rate fell below {self.auto_lr.min_lr:g}; "
                           "training stops")
            self.trainer.should_stop = True

    def _set_lr(self, lr: float) -> None:
        for optimizer in self.trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep λ1, λ2, the learning-rate rule and the best weights for a resume."""
        checkpoint["autolora"] = {
            "lambdas": [self.lambda1, self.lambda2],
            "auto_lr": None if self.auto_lr is None else self.auto_lr.state_dict(),
            "best_state": self.best_state,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("autolora")
        if state is None:
            return
        self.lambda1, self.lambda2 = state["lambdas"]
        if self.auto_lr is not None and state["auto_lr"] is not None:
            self.auto_lr.load_state_dict(state["auto_lr"])
        self.best_state = state["best_state"]
