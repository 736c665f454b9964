"""Dual BatchNorm "wings" for TWINS fine-tuning.

Liu et al., "TWINS: A Fine-Tuning Framework for Improved Transferability of Adversarial
Robustness and Generalization", CVPR 2023. Every BatchNorm of a pre-trained network becomes
two wings that share the surrounding convolutions and the head:

- the **frozen** wing normalizes with the pre-training population statistics (running
  mean/var), in train and eval mode alike, and never updates them;
- the **adaptive** wing is an ordinary BatchNorm initialized from the same checkpoint, which
  learns the target data's statistics.

Each wing has its own affine γ, β (both copied from the checkpoint, both trainable). A model
routes through one wing at a time (``wing`` attribute, :func:`use_wing`); inference uses the
adaptive wing, and :func:`export_adaptive` turns a dual model back into a plain one.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from torch import Tensor, nn

Wing = Literal["frozen", "adaptive"]
WINGS: tuple[Wing, ...] = ("frozen", "adaptive")


def _check_wing(wing: str) -> None:
    if wing not in WINGS:
        raise ValueError(f"wing must be 'frozen' or 'adaptive', got {wing!r}")


class DualBatchNorm2d(nn.Module):
    """Two wings of one pre-trained ``BatchNorm2d``, routed by :attr:`wing`.

    Both wings start as copies of ``bn`` (statistics, affine parameters, ε, momentum, and the
    class itself, so subclasses such as timm's ``BatchNormAct2d`` keep their activation). The
    frozen wing is always run in eval mode, whatever the model's mode: it normalizes with the
    pre-training running mean/var and never changes them, while gradients still reach its γ, β
    and the input. The adaptive wing behaves like the original layer (batch statistics and
    running-statistics updates in train mode).

    State-dict keys are ``<name>.frozen.*`` and ``<name>.adaptive.*``.

    Args:
        bn: the pre-trained layer; it needs running statistics.

    Raises:
        TypeError: when ``bn`` is not a ``BatchNorm2d``.
        ValueError: when ``bn`` tracks no running statistics (there is nothing to freeze).
    """

    def __init__(self, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        if not isinstance(bn, nn.BatchNorm2d):
            raise TypeError(f"DualBatchNorm2d wraps an nn.BatchNorm2d, got {type(bn).__name__}")
        if bn.running_mean is None or bn.running_var is None:
            raise ValueError(
                "the frozen wing needs the pre-training running statistics, but this BatchNorm2d "
                "was built with track_running_stats=False"
            )
        self.frozen = copy.deepcopy(bn)
        self.adaptive = copy.deepcopy(bn)
        self._wing: Wing = "adaptive"

    @property
    def wing(self) -> Wing:
        """The wing that :meth:`forward` uses: ``"frozen"`` or ``"adaptive"`` (the default)."""
        return self._wing

    @wing.setter
    def wing(self, wing: Wing) -> None:
        _check_wing(wing)
        self._wing = wing

    def forward(self, x: Tensor) -> Tensor:
        """Normalize ``x`` with the selected wing."""
        if self._wing == "adaptive":
            return self.adaptive(x)
        frozen = self.frozen
        was_training = frozen.training
        frozen.training = False
        try:
            return frozen(x)
        finally:
            frozen.training = was_training

    def extra_repr(self) -> str:
        return f"wing={self._wing!r}"


def convert_to_dual_bn(model: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` inside ``model`` by a :class:`DualBatchNorm2d`, in place.

    Stem, residual and downsample/shortcut BatchNorms are all converted; BatchNorm subclasses
    (e.g. timm's ``BatchNormAct2d``) are wrapped whole. Layers that are already dual are left
    alone, so converting twice is harmless, and a layer shared by several parents becomes one
    shared dual layer. Convert after loading the pre-trained weights: both wings copy the
    statistics and affine parameters the layers hold at conversion time.

    Args:
        model: any network; a bare ``BatchNorm2d`` is accepted too.

    Returns:
        ``model`` itself, or the new dual layer when ``model`` is a ``BatchNorm2d``.

    Raises:
        ValueError: when the model has no ``BatchNorm2d`` (TWINS would have nothing to do) or
            one of them tracks no running statistics.
    """
    converted: dict[int, DualBatchNorm2d] = {}
    result = _convert(model, converted)
    if not converted and not any(isinstance(m, DualBatchNorm2d) for m in result.modules()):
        raise ValueError(
            f"{type(model).__name__} has no BatchNorm2d layer to convert; TWINS needs a network "
            "with batch normalization"
        )
    return result


def _convert(module: nn.Module, converted: dict[int, DualBatchNorm2d]) -> nn.Module:
    if isinstance(module, DualBatchNorm2d):
        return module
    if isinstance(module, nn.BatchNorm2d):
        if id(module) not in converted:
            converted[id(module)] = DualBatchNorm2d(module)
        return converted[id(module)]
    for name, child in list(module._modules.items()):  # every slot, shared children included
        if child is not None:
            new_child = _convert(child, converted)
            if new_child is not child:
                setattr(module, name, new_child)
    return module


def dual_batchnorms(model: nn.Module) -> list[DualBatchNorm2d]:
    """Every :class:`DualBatchNorm2d` of ``model``, in module order."""
    return [m for m in model.modules() if isinstance(m, DualBatchNorm2d)]


def set_wing(model: nn.Module, wing: Wing) -> None:
    """Route every dual layer of ``model`` through ``wing``.

    Raises:
        ValueError: for an unknown wing name, or a model without dual layers (convert it with
            :func:`convert_to_dual_bn` first).
    """
    _check_wing(wing)
    layers = dual_batchnorms(model)
    if not layers:
        raise ValueError(
            f"{type(model).__name__} has no DualBatchNorm2d layer; call convert_to_dual_bn first"
        )
    for layer in layers:
        layer.wing = wing


@contextmanager
def use_wing(model: nn.Module, wing: Wing) -> Iterator[nn.Module]:
    """``with use_wing(model, "frozen"):`` runs the block through one wing, then restores.

    Each dual layer gets its previous wing back afterwards, also when the block raises.
    """
    previous = [(layer, layer.wing) for layer in dual_batchnorms(model)]
    set_wing(model, wing)
    try:
        yield model
    finally:
        for layer, old in previous:
            layer.wing = old


def export_adaptive(model: nn.Module) -> nn.Module:
    """A deployable copy of a dual model that keeps only the adaptive wings.

    Every :class:`DualBatchNorm2d` becomes (a copy of) its adaptive layer, i.e. an ordinary
    BatchNorm with the fine-tuned statistics and affine parameters, so the result computes
    what the dual model computes through its adaptive wing and loads with the original
    architecture's state-dict keys. ``model`` itself is not changed.

    Raises:
        ValueError: when ``model`` has no dual layers.
    """
    if not dual_batchnorms(model):
        raise ValueError(
            f"{type(model).__name__} has no DualBatchNorm2d layer: there is nothing to export"
        )
    plain = copy.deepcopy(model)
    if isinstance(plain, DualBatchNorm2d):
        return plain.adaptive
    _keep_adaptive(plain)
    return plain


def _keep_adaptive(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, DualBatchNorm2d):
            setattr(module, name, child.adaptive)
        else:
            _keep_adaptive(child)
