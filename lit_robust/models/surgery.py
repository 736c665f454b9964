"""Explicit, reversible model surgery: find or replace the head, freeze, BN modes, candidates.

Every function works on plain ``nn.Module`` trees and is undone by its counterpart
(:func:`freeze` / :func:`unfreeze`, :func:`set_bn_eval` / ``module.train()``).
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from lit_robust.models.heads import find_head
from lit_robust.models.normalize import NormalizedClassifier


def get_head(net: nn.Module) -> tuple[str, nn.Linear]:
    """The classifier head of a backbone: its dotted name and the ``nn.Linear`` itself.

    Looks at timm's ``get_classifier()`` first, then at the attributes ``linear``, ``fc``,
    ``classifier`` and ``head``. A :class:`NormalizedClassifier` is searched through its
    ``net`` (the name then starts with ``net.``).

    Raises:
        ValueError: when no ``nn.Linear`` head is found.
    """
    if isinstance(net, NormalizedClassifier):
        name, head = get_head(net.net)
        return f"net.{name}", head
    return find_head(net)


def replace_head(net: nn.Module, num_classes: int) -> nn.Linear:
    """Put a freshly initialized ``nn.Linear(in_features, num_classes)`` in place of the head.

    The new head keeps the old one's ``in_features``, bias setting, device and dtype. A
    ``num_classes`` attribute of the backbone or of the head's parent (timm) is updated too.

    Returns:
        The new head (already inside ``net``).

    Raises:
        ValueError: for a non-positive ``num_classes`` or a backbone without a linear head.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    name, old = get_head(net)
    new = nn.Linear(
        old.in_features, num_classes, bias=old.bias is not None,
        device=old.weight.device, dtype=old.weight.dtype,
    )
    parent_name, _, attr = name.rpartition(".")
    parent = net.get_submodule(parent_name)
    setattr(parent, attr, new)
    for owner in (net, parent):
        if isinstance(getattr(owner, "num_classes", None), int):
            owner.num_classes = num_classes
    return new


def freeze(module: nn.Module) -> nn.Module:
    """Stop gradients to every parameter of ``module`` (``requires_grad = False``)."""
    module.requires_grad_(False)
    return module


def unfreeze(module: nn.Module) -> nn.Module:
    """Let gradients reach every parameter of ``module`` again (``requires_grad = True``)."""
    module.requires_grad_(True)
    return module


def set_bn_eval(module: nn.Module) -> nn.Module:
    """Put every BatchNorm layer inside ``module`` (itself included) in eval mode.

    The layers then normalize with their running statistics and stop updating them. Other
    layers keep their mode. ``module.train()`` undoes it, so call this again after every
    ``train()`` (e.g. in ``on_train_epoch_start``).
    """
    for layer in module.modules():
        if isinstance(layer, _BatchNorm):
            layer.eval()
    return module


def named_candidate_modules(
    model: nn.Module, types: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear)
) -> Iterator[tuple[str, nn.Module]]:
    """Yield ``(dotted name, module)`` for every submodule of the given types, in model order.

    With the default types these are RiFT's candidate modules: every convolution (stem and
    1×1 shortcuts included) and every linear layer (the classifier included).
    """
    for name, module in model.named_modules():
        if isinstance(module, types):
            yield name, module
