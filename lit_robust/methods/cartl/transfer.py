"""Last-k fine-tuning: the shared base of CARTL's transfer methods, and the vanilla baseline.

Chen et al., "CARTL: Cooperative Adversarially-Robust Transfer Learning", ICML 2021.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from lit_robust.attacks import PGDAttack
from lit_robust.methods.base import RobustClassifier
from lit_robust.methods.optim import ScheduleName
from lit_robust.models.blocks import check_k, extractor_batchnorms, freeze_all_but_last
from lit_robust.models.modes import mode
from lit_robust.models.normalize import NormalizedClassifier


class LastKTransfer(RobustClassifier):
    """Fine-tune only the last ``k`` blocks of a pre-trained network (CARTL, ICML 2021).

    The blocks are those of :mod:`lit_robust.models.blocks` (e.g. 17 for WRN-34-10, the
    classifier last); the stem and every block before the last ``k`` are frozen. Training is on
    clean images with cross-entropy.

    The two BatchNorm options are the official code's ``--freeze-bn`` and
    ``--reuse-teacher-statistic`` (``src/trainer/transfer_learning_trainer/bn_tl_trainer.py``);
    each method's defaults are the official scripts' choice for it (the paper's Table 1 shows
    they move robust accuracy by several points).

    Args:
        k: number of trailing blocks that train (1 = the classifier only); checked against the
            backbone's block count when the model is built.
        freeze_bn_affine: freeze the affine γ and β of every BatchNorm, those inside the last
            ``k`` blocks included (the extractor's are frozen anyway).
        reuse_source_statistics: keep the BatchNorms outside the last ``k`` blocks (the
            frozen extractor, stem included) in eval mode, so they normalize with the
            source's running statistics and never update them; ``False`` lets them
            normalize with batch statistics and re-estimate their running statistics on the
            target during training, as plain ``model.train()`` does.
        allow_random_source: fine-tune on top of a randomly initialized network when
            ``pretrained`` is unset (a "random features" baseline); otherwise a missing
            source is an error, since the frozen blocks would be random.
        lr: SGD learning rate (0.1 in the CARTL code's transfer runs).
        momentum: SGD momentum (0.9).
        weight_decay: weight decay (5e-4).
        schedule: learning-rate schedule (multistep).
        milestones: decay epochs (40, 70 and 90 of 100 in the CARTL code).
        gamma: decay factor (0.2 in the CARTL code).
        **kwargs: the other arguments of :class:`~lit_robust.methods.base.RobustClassifier`.
    """

    keeps_source_layers = True

    def __init__(
        self,
        k: int = 4,
        freeze_bn_affine: bool = False,
        reuse_source_statistics: bool = True,
        allow_random_source: bool = False,
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        schedule: ScheduleName = "multistep",
        milestones: Sequence[float] | None = (40, 70, 90),
        gamma: float = 0.2,
        **kwargs: Any,
    ) -> None:  # pragma: no mutate block (save_hyperparameters reads the signature)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive number of blocks, got {k!r}")
        if kwargs.get("pretrained") is None and not allow_random_source:
            raise ValueError(
                f"{type(self).__name__} keeps the source network's blocks but no source "
                "checkpoint was given: set model.pretrained to it (model.allow_random_source: "
                "true fine-tunes on top of a random network on purpose)"
            )
        super().__init__(lr=lr, momentum=momentum, weight_decay=weight_decay, schedule=schedule,
                         milestones=milestones, gamma=gamma, **kwargs)
        self.k = k
        self.freeze_bn_affine = freeze_bn_affine
        self.reuse_source_statistics = reuse_source_statistics
        self._extractor_bns: list[_BatchNorm] = []

    def transform_model(self, model: NormalizedClassifier) -> nn.Module:
        """Freeze everything but the last ``k`` blocks (after the weights are loaded)."""
        check_k(model, self.k)
        freeze_all_but_last(model, self.k, freeze_bn_affine=self.freeze_bn_affine)
        self._extractor_bns = extractor_batchnorms(model, self.k)
        return model

    def frozen_batchnorms(self) -> list[_BatchNorm]:
        """The BatchNorms kept in eval mode during training (empty unless reusing statistics)."""
        return self._extractor_bns if self.reuse_source_statistics else []

    def keep_frozen_batchnorms_in_eval(self) -> None:
        """Put :meth:`frozen_batchnorms` in eval mode (``train()`` undoes it)."""
        for layer in self.frozen_batchnorms():
            layer.eval()

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self.keep_frozen_batchnorms_in_eval()


class VanillaTransfer(LastKTransfer):
    """Vanilla last-k fine-tuning, clean or adversarial: the baseline of CARTL (ICML 2021).

    Defaults are the official "TL" baseline (``scripts/tl_from_at.sh``: ``--freeze-bn
    --reuse-teacher-statistic``): every BatchNorm's affine parameters frozen, the extractor's
    BatchNorms normalizing with the source's statistics.

    Args:
        adversarial: train on PGD examples of ``attack`` instead of clean images.
        attack: the training attack when ``adversarial`` (default PGD-10, L∞ 8/255, step
            2/255); also the validation attack when none is given.
        attack_in_eval_mode: generate the attack with every BatchNorm in eval mode; ``False``
            attacks in train mode (the frozen extractor's BatchNorms still stay in eval mode
            when ``reuse_source_statistics``).
        freeze_bn_affine: as :class:`LastKTransfer` (default on, as the official baseline).
        reuse_source_statistics: as :class:`LastKTransfer` (default on, as the official
            baseline).
        **kwargs: the other arguments of :class:`LastKTransfer`.
    """

    def __init__(
        self,
        adversarial: bool = False,
        attack: PGDAttack | None = None,
        attack_in_eval_mode: bool = True,
        freeze_bn_affine: bool = True,
        reuse_source_statistics: bool = True,
        **kwargs: Any,
    ) -> None:  # pragma: no mutate block (save_hyperparameters reads the signature)
        super().__init__(freeze_bn_affine=freeze_bn_affine,
                         reuse_source_statistics=reuse_source_statistics, **kwargs)
        self.adversarial = adversarial
        self.attack = attack if attack is not None else PGDAttack()
        if self.val_attack is None:
            self.val_attack = self.attack
        self.attack_in_eval_mode = attack_in_eval_mode

    def make_adversarial(self, x: Tensor, y: Tensor) -> Tensor | None:
        if not self.adversarial:
            return None
        with mode(self.model, training=not self.attack_in_eval_mode):
            self.keep_frozen_batchnorms_in_eval()
            return self.attack(self.model, x, y)

    def training_loss(self, x: Tensor, x_adv: Tensor | None, y: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.model(x if x_adv is None else x_adv)
        return F.cross_entropy(logits, y), logits
