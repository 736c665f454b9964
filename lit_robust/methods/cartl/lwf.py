"""Robust transfer with learning without forgetting (LwF), CARTL's feature-preserving baseline."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from lit_robust.losses import lwf_penalty
from lit_robust.methods.cartl.transfer import LastKTransfer
from lit_robust.methods.optim import ScheduleName
from lit_robust.models.blocks import blocks, forward_from, forward_until
from lit_robust.models.normalize import NormalizedClassifier


class LwFTransfer(LastKTransfer):
    """Fine-tuning with a feature-preservation penalty (Shafahi et al., "Adversarially Robust
    Transfer Learning", ICLR 2020; a baseline of CARTL, ICML 2021).

    A frozen copy of the pre-trained network (taken after loading ``pretrained``, kept in
    eval mode, stored in the checkpoint as ``source_model``) gives the penultimate features
    z₀ of every training batch — the same augmented images the model sees — and the loss is

        CE(f(x), y) + λ · mean_n ‖z₀(xₙ) − z(xₙ)‖₁

    (:func:`~lit_robust.losses.lwf_penalty`) on clean images. For the first
    ``head_only_epochs`` epochs only the classifier trains (its features, and so the
    penalty, stay fixed); afterwards the whole network does, stem included (``k`` unset, the
    paper and CARTL's official ``lwf_tl_trainer.py``), or only the last ``k`` blocks. The
    BatchNorms are in train mode throughout by default, as the official code runs them.

    Args:
        lam: λ (0.1, 0.01, 0.005 or 0.001 in the paper's sweep).
        head_only_epochs: epochs that train only the classifier (the official code's
            ``ep < 26`` of 52 epochs counted from 1: 25).
        k: ``None`` (default) trains every parameter after the warm-up; a number trains only
            the last ``k`` blocks (the stem and the earlier blocks stay frozen).
        freeze_bn_affine: freeze the affine γ and β of every BatchNorm.
        reuse_source_statistics: keep the BatchNorms that do not train in eval mode with the
            source's statistics: during the warm-up all of them, afterwards those outside the
            last ``k`` blocks (none when ``k`` is unset). Off by default: the official code
            re-estimates them on the target.
        lr: SGD learning rate (0.001, constant).
        momentum: SGD momentum (0.9).
        weight_decay: weight decay (2e-4).
        schedule: learning-rate schedule (constant).
        milestones: decay epochs of a multistep schedule.
        **kwargs: the other arguments of :class:`LastKTransfer`.
    """

    def __init__(
        self,
        lam: float = 0.1,
        head_only_epochs: int = 25,
        k: int | None = None,
        freeze_bn_affine: bool = False,
        reuse_source_statistics: bool = False,
        lr: float = 0.001,
        momentum: float = 0.9,
        weight_decay: float = 2e-4,
        schedule: ScheduleName = "constant",
        milestones: Sequence[float] | None = None,
        **kwargs: Any,
    ) -> None:  # pragma: no mutate block (save_hyperparameters reads the signature)
        if lam < 0:
            raise ValueError(f"lam must be >= 0, got {lam}")
        if head_only_epochs < 0:
            raise ValueError(f"head_only_epochs must be >= 0, got {head_only_epochs}")
        super().__init__(k=1 if k is None else k, freeze_bn_affine=freeze_bn_affine,
                         reuse_source_statistics=reuse_source_statistics, lr=lr,
                         momentum=momentum, weight_decay=weight_decay, schedule=schedule,
                         milestones=milestones, **kwargs)
        self.k = k
        self.lam = lam
        self.head_only_epochs = head_only_epochs
        self.source_model: nn.Module | None = None
        self._tuned_parameters: list[nn.Parameter] = []
        self._head_parameters: set[int] = set()
        self._body_bns: list[_BatchNorm] = []

    def transform_model(self, model: NormalizedClassifier) -> nn.Module:
        """Keep a frozen copy of the loaded network, then choose what trains after the
        warm-up: everything (``k`` unset) or the last ``k`` blocks."""
        source = copy.deepcopy(model).requires_grad_(False).eval()
        head = blocks(model)[-1]  # also checks that the backbone has a block layout
        if self.k is None:
            model.requires_grad_(True)
            if self.freeze_bn_affine:
                for layer in model.modules():
                    if isinstance(layer, _BatchNorm):
                        layer.requires_grad_(False)
            self._extractor_bns = []
            head_modules = {id(m) for m in head.modules()}
            self._body_bns = [m for m in model.modules()
                              if isinstance(m, _BatchNorm) and id(m) not in head_modules]
        else:
            model = super().transform_model(model)
            tuned_body = blocks(model)[-self.k:-1]
            self._body_bns = [m for block in tuned_body for m in block.modules()
                              if isinstance(m, _BatchNorm)]
        self.source_model = source
        self._tuned_parameters = [p for p in model.parameters() if p.requires_grad]
        self._head_parameters = {id(p) for p in head.parameters()}
        return model

    def param_groups(self) -> list[nn.Parameter]:
        """Every parameter that trains after the warm-up, also those frozen during it."""
        return list(self._tuned_parameters)

    @property
    def head_only(self) -> bool:
        """Whether the current epoch trains only the classifier."""
        return self.current_epoch < self.head_only_epochs

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        for param in self._tuned_parameters:
            param.requires_grad_(id(param) in self._head_parameters or not self.head_only)
        if not self.head_only:  # the warm-up kept them in eval mode
            for layer in self._body_bns:
                layer.train(self.model.training)

    def frozen_batchnorms(self) -> list[_BatchNorm]:
        if not self.reuse_source_statistics:
            return []
        return [*self._extractor_bns, *self._body_bns] if self.head_only else self._extractor_bns

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        super().on_train_batch_start(batch, batch_idx)
        self.source_model.eval()

    def training_loss(self, x: Tensor, x_adv: Tensor | None, y: Tensor) -> tuple[Tensor, Tensor]:
        features = forward_until(self.model, x, -1)
        logits = forward_from(self.model, features, -1)
        with torch.no_grad():
            source_features = forward_until(self.source_model, x, -1)
        penalty = lwf_penalty(features, source_features)
        self.log("train/lwf_penalty", penalty.detach(), on_step=False, on_epoch=True)
        return F.cross_entropy(logits, y) + self.lam * penalty, logits
