"""Last-layer-only fine-tuning: standard training of the classifier head on a frozen network."""

from __future__ import annotations

from torch import nn

from lit_robust.methods.standard import StandardTraining
from lit_robust.models.normalize import NormalizedClassifier
from lit_robust.models.surgery import freeze, get_head, unfreeze


class LastLayerFineTuning(StandardTraining):
    """Cross-entropy on clean images that trains only the classifier head.

    The ablation of Vaishnavi et al., "A Study of the Effects of Transfer Learning on
    Adversarial Robustness" (TMLR, Table 7): a pre-trained network is fine-tuned with standard
    training of its last layer alone. Every other parameter is frozen, and the frozen network
    runs in eval mode throughout training (BatchNorm normalizes with the pre-trained running
    statistics and never updates them; dropout is off), so the features — every weight and
    buffer outside the head — stay bit-for-bit those of the checkpoint.

    Use it with ``pretrained`` (and ``reset_head`` for a new task). All arguments are those of
    :class:`~lit_robust.methods.base.RobustClassifier`.
    """

    def transform_model(self, model: NormalizedClassifier) -> nn.Module:
        """Freeze every parameter but the head's and put the rest of the network in eval mode
        (Lightning keeps each module's mode across training and validation)."""
        freeze(model)
        head = unfreeze(get_head(model)[1])
        model.eval()
        head.train(self.training)
        return model

    def train(self, mode: bool = True) -> LastLayerFineTuning:
        """Train mode reaches the head only; the frozen network stays in eval mode."""
        super().train(mode)
        if mode and self.model is not None:
            self.model.eval()
            get_head(self.model)[1].train()
        return self
