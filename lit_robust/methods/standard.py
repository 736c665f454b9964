"""Standard training (cross-entropy on clean images), also the vanilla fine-tuning baseline."""

from __future__ import annotations

from lit_robust.methods.base import RobustClassifier


class StandardTraining(RobustClassifier):
    """Empirical risk minimization on clean images.

    All arguments are those of :class:`~lit_robust.methods.base.RobustClassifier`.
    """
