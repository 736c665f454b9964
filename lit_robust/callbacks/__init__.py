"""Lightning callbacks that work with any method."""

from lit_robust.callbacks.overfitting_guard import CatastrophicOverfittingGuard

__all__ = ["CatastrophicOverfittingGuard"]
