"""Backbones by name: a registry that configs and users extend with :func:`register_backbone`.

Every factory takes ``num_classes`` plus its own keyword arguments and returns an
``nn.Module`` that maps (normalized) images to logits. Names of the form ``timm/<model>``
build any timm model with random weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torchvision
from torch import nn

from lit_robust.models.cifar_resnet import resnet18, resnet34, resnet50
from lit_robust.models.normalize import NormalizedClassifier
from lit_robust.models.preact_resnet import preact_resnet18
from lit_robust.models.tiny import TinyCNN
from lit_robust.models.wide_resnet import WideResNet, wrn_28_4, wrn_28_10, wrn_34_10, wrn_70_16

BackboneFactory = Callable[..., nn.Module]

TIMM_PREFIX = "timm/"

_REGISTRY: dict[str, BackboneFactory] = {}


def register_backbone(name: str) -> Callable[[BackboneFactory], BackboneFactory]:
    """Decorator that makes a factory ``f(num_classes, **kwargs) -> nn.Module`` buildable by name.

    Example::

        @register_backbone("my_net")
        def my_net(num_classes: int, width: int = 64) -> nn.Module:
            ...

    Raises:
        ValueError: when the name is empty, starts with ``timm/`` or is already registered.
    """
    if not name or name.startswith(TIMM_PREFIX):
        raise ValueError(f"backbone name must be non-empty and not start with {TIMM_PREFIX!r}")
    if name in _REGISTRY:
        raise ValueError(f"a backbone named {name!r} is already registered")

    def decorate(factory: BackboneFactory) -> BackboneFactory:
        _REGISTRY[name] = factory
        return factory

    return decorate


def available_backbones() -> list[str]:
    """Registered backbone names, sorted, plus the ``timm/<model name>`` pattern."""
    return sorted(_REGISTRY) + [f"{TIMM_PREFIX}<model name>"]


def build_backbone(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build a randomly initialized backbone by name.

    Args:
        name: a registered name (see :func:`available_backbones`) or ``timm/<model name>``.
        num_classes: outputs of the classifier head.
        **kwargs: passed to the factory (e.g. ``width`` for ``tiny_cnn``, ``dropout`` for the
            WRNs, any ``timm.create_model`` argument).

    Raises:
        ValueError: for an unknown name (the message lists the available ones) or a
            non-positive ``num_classes``.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if name.startswith(TIMM_PREFIX):
        return _timm_backbone(name[len(TIMM_PREFIX):], num_classes, **kwargs)
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown backbone {name!r}; available: {', '.join(available_backbones())}"
        )
    return _REGISTRY[name](num_classes=num_classes, **kwargs)


def build_classifier(
    name: str, num_classes: int, mean: Sequence[float], std: Sequence[float], **kwargs: Any
) -> NormalizedClassifier:
    """:func:`build_backbone` wrapped with its input normalization (pixel-space input)."""
    return NormalizedClassifier(build_backbone(name, num_classes, **kwargs), mean, std)


def _timm_backbone(model_name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    import timm

    if not model_name:
        raise ValueError("write a timm model as 'timm/<model name>', e.g. 'timm/resnet18'")
    if not timm.is_model(model_name):
        raise ValueError(
            f"timm has no model named {model_name!r}; list them with timm.list_models()"
        )
    return timm.create_model(model_name, pretrained=False, num_classes=num_classes, **kwargs)


register_backbone("tiny_cnn")(TinyCNN)
register_backbone("resnet18")(resnet18)
register_backbone("resnet34")(resnet34)
register_backbone("resnet50")(resnet50)
register_backbone("preact_resnet18")(preact_resnet18)
register_backbone("wrn_28_4")(wrn_28_4)
register_backbone("wrn_34_10")(wrn_34_10)
register_backbone("wrn_28_10")(wrn_28_10)
register_backbone("wrn_70_16")(wrn_70_16)
register_backbone("wide_resnet")(WideResNet)  # any depth / widen_factor


@register_backbone("tv_resnet50")
def tv_resnet50(num_classes: int = 1000) -> nn.Module:
    """torchvision's ImageNet ResNet-50 (7×7 stem, max-pool; for 224-pixel inputs), random init."""
    return torchvision.models.resnet50(weights=None, num_classes=num_classes)
