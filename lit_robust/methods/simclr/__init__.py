"""SimCLR self-supervised pre-training: the method and its on-device augmentations."""

from lit_robust.methods.simclr.augment import SimCLRAugmentation
from lit_robust.methods.simclr.method import SimCLR, projection_head

__all__ = ["SimCLR", "SimCLRAugmentation", "projection_head"]
