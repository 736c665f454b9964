"""CARTL's non-expansive fine-tuning (NEFT) of the last k blocks."""

from __future__ import annotations

from typing import Any

from torch import nn

from lit_robust.methods.cartl.transfer import LastKTransfer
from lit_robust.models.normalize import NormalizedClassifier
from lit_robust.models.spectral import apply_neft, power_iteration_step


class NEFTTransfer(LastKTransfer):
    """Non-expansive fine-tuning (Chen et al., "CARTL: Cooperative Adversarially-Robust
    Transfer Learning", ICML 2021).

    The last ``k`` blocks are fine-tuned on clean images with cross-entropy while every conv
    (shortcut convs included) and linear layer inside them computes with W* = β·W/σ(W)
    (:mod:`lit_robust.models.spectral`: σ by power iteration, one step before every training
    step, vectors kept in the checkpoint), and every residual block among them returns
    ½·shortcut + ½·residual. Everything before them is frozen as in :class:`LastKTransfer`.

    Validation and test evaluate this very model (the scaled weights with the vectors of the
    last training step); :func:`~lit_robust.models.spectral.fold_spectral_scaling` turns it
    into plain weights with the same outputs, and a NEFT checkpoint given as ``pretrained``
    to any method loads folded (:func:`~lit_robust.models.checkpoint.load_weights`).

    BatchNorm defaults are the official NEFT scripts' (``scripts/pwrn34_neft_sn_norm.sh``:
    ``--freeze-bn`` without reusing statistics): every BatchNorm's affine parameters frozen,
    every running statistic re-estimated on the target (all BatchNorms in train mode).

    Args:
        beta: β in (0, 1], the spectral norm of every scaled weight (the paper: 0.4 after an
            FDM source, 0.6 after plain adversarial training).
        freeze_bn_affine: as :class:`LastKTransfer` (default on, as the official scripts).
        reuse_source_statistics: as :class:`LastKTransfer` (default off, as the official
            scripts).
        **kwargs: the other arguments of :class:`LastKTransfer` (``k``, the optimization
            settings).
    """

    def __init__(
        self,
        beta: float = 0.4,
        freeze_bn_affine: bool = True,
        reuse_source_statistics: bool = False,
        **kwargs: Any,
    ) -> None:  # pragma: no mutate block (save_hyperparameters reads the signature)
        if not 0.0 < beta <= 1.0:
            raise ValueError(f"beta must be in (0, 1], got {beta}")
        super().__init__(freeze_bn_affine=freeze_bn_affine,
                         reuse_source_statistics=reuse_source_statistics, **kwargs)
        self.beta = beta

    def transform_model(self, model: NormalizedClassifier) -> nn.Module:
        """Freeze all but the last ``k`` blocks, then scale their weights and average them."""
        model = super().transform_model(model)
        apply_neft(model, self.k, self.beta)
        return model

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        super().on_train_batch_start(batch, batch_idx)
        power_iteration_step(self.model)
