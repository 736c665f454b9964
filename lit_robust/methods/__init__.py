"""Methods: one LightningModule per method over :class:`RobustClassifier`."""

from lit_robust.methods.adversarial import AdversarialTraining
from lit_robust.methods.base import RobustClassifier
from lit_robust.methods.rift import RiFT
from lit_robust.methods.standard import StandardTraining
from lit_robust.methods.trades import TRADES
from lit_robust.methods.twins import TWINS

__all__ = ["AdversarialTraining", "RiFT", "RobustClassifier", "StandardTraining", "TRADES", "TWINS"]
