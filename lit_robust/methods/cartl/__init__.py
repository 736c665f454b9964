"""CARTL (Chen et al., "CARTL: Cooperative Adversarially-Robust Transfer Learning", ICML 2021).

- :class:`CARTLSource`: source-side adversarial training with feature distance minimization;
- :class:`NEFTTransfer`: non-expansive fine-tuning of the last k blocks;
- :class:`VanillaTransfer`: plain last-k fine-tuning (clean or adversarial), the baseline;
- :class:`LwFTransfer`: last-k fine-tuning with Shafahi et al.'s LwF feature penalty.

The block enumeration and freezing are in :mod:`lit_robust.models.blocks`, the spectral
scaling in :mod:`lit_robust.models.spectral`, the losses in :mod:`lit_robust.losses`.
"""

from lit_robust.methods.cartl.lwf import LwFTransfer
from lit_robust.methods.cartl.neft import NEFTTransfer
from lit_robust.methods.cartl.source import CARTLSource
from lit_robust.methods.cartl.transfer import LastKTransfer, VanillaTransfer

__all__ = ["CARTLSource", "LastKTransfer", "LwFTransfer", "NEFTTransfer", "VanillaTransfer"]
