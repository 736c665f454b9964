"""Methods: one LightningModule per method over :class:`RobustClassifier`."""

from lit_robust.methods.adversarial import AdversarialTraining
from lit_robust.methods.autolora import AutoLoRa
from lit_robust.methods.base import RobustClassifier
from lit_robust.methods.cartl import CARTLSource, LwFTransfer, NEFTTransfer, VanillaTransfer
from lit_robust.methods.fast_at import FGSMRS, NFGSM, SingleStepAdversarialTraining
from lit_robust.methods.grad_align import GradAlign
from lit_robust.methods.last_layer import LastLayerFineTuning
from lit_robust.methods.macer import MACER
from lit_robust.methods.rift import RiFT
from lit_robust.methods.roli import RoLI
from lit_robust.methods.simclr import SimCLR
from lit_robust.methods.smoothadv import SmoothAdv
from lit_robust.methods.smoothing_training import (
    ConsistencyRegularization,
    GaussianAugmentation,
)
from lit_robust.methods.standard import StandardTraining
from lit_robust.methods.trades import TRADES
from lit_robust.methods.twins import TWINS

__all__ = [
    "AutoLoRa", "RoLI",
    "AdversarialTraining", "CARTLSource", "ConsistencyRegularization", "FGSMRS",
    "GaussianAugmentation", "GradAlign", "LastLayerFineTuning", "LwFTransfer", "MACER", "NFGSM",
    "NEFTTransfer", "RiFT", "RobustClassifier", "SimCLR", "SingleStepAdversarialTraining",
    "SmoothAdv", "StandardTraining", "TRADES", "TWINS", "VanillaTransfer",
]
