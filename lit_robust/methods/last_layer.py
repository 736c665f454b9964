"""Last-layer-only fine-tuning: standard training of the classifier head on a frozen network."""

from __future__ import annotations

from typing import Any, Literal

from torch import nn

from lit_robust.methods.standard import StandardTraining
from lit_robust.models.normalize import NormalizedClassifier
from lit_robust.models.surgery import freeze, get_head, unfreeze

BNStatistics = Literal["target", "source"]


class LastLayerFineTuning(StandardTraining):
    """Cross-entropy on clean images that trains only the classifier head.

    The ablation of Vaishnavi et al., "A Study of the Effects of Transfer Learning on
    Adversarial Robustness" (TMLR, Table 7): a pre-trained network is fine-tuned with standard
    training of its last layer alone. Every parameter but the head's is frozen. What the
    frozen BatchNorm layers do is ``bn_statistics``:

    - ``"target"`` (default, the official code, which trains the whole model in train mode):
      the frozen network runs in train mode during training steps, so BatchNorm normalizes
      with batch statistics and re-estimates its running statistics on the target;
    - ``"source"``: the frozen network runs in eval mode throughout training (BatchNorm
      normalizes with the pre-trained running statistics and never updates them; dropout is
      off), so the features — every weight and buffer outside the head — stay bit-for-bit
      those of the checkpoint.

    Use it with ``pretrained`` (and ``reset_head`` for a new task).

    Args:
        bn_statistics: ``"target"`` or ``"source"`` (see above).
        **kwargs: the arguments of :class:`~lit_robust.methods.base.RobustClassifier`.

    Raises:
        ValueError: for another ``bn_statistics``.
    """

    keeps_source_layers = True

    def __init__(self, bn_statistics: BNStatistics = "target", **kwargs: Any) -> None:
        if bn_statistics not in ("target", "source"):
            raise ValueError(
                f"bn_statistics must be 'target' (re-estimate BatchNorm statistics on the "
                f"target, the official code) or 'source' (keep the checkpoint's), got "
                f"{bn_statistics!r}"
            )
        super().__init__(**kwargs)

    def transform_model(self, model: NormalizedClassifier) -> nn.Module:
        """Freeze every parameter but the head's; with ``bn_statistics: source`` put the rest
        of the network in eval mode (Lightning keeps each module's mode across training and
        validation)."""
        freeze(model)
        head = unfreeze(get_head(model)[1])
        if self.hparams.bn_statistics == "source":
            model.eval()
            head.train(self.training)
        return model

    def train(self, mode: bool = True) -> LastLayerFineTuning:
        """With ``bn_statistics: source`` train mode reaches the head only; the frozen network
        stays in eval mode."""
        super().train(mode)
        if mode and self.model is not None and self.hparams.bn_statistics == "source":
            self.model.eval()
            get_head(self.model)[1].train()
        return self
