"""Context managers that set a model's train/eval mode explicitly and restore it after.

Attacks never change BatchNorm modes themselves (DESIGN §2); the method decides, e.g.
PGD generation in eval mode for TRADES and TWINS.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from torch import nn


@contextmanager
def mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    """Put every submodule in ``training`` mode for the block, then restore each one's mode."""
    previous = [(m, m.training) for m in model.modules()]
    model.train(training)
    try:
        yield model
    finally:
        for module, was_training in previous:
            module.training = was_training


def eval_mode(model: nn.Module) -> AbstractContextManager[nn.Module]:
    """``with eval_mode(model):`` runs the block with the model in eval mode."""
    return mode(model, False)
