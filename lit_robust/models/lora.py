"""Low-rank adaptation (LoRA) of convolution and linear layers, with merge and removal.

Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022. A LoRA layer keeps
the pre-trained layer (its weight ``W`` frozen or trainable, as the method decides) and adds a
low-rank update ``ΔW = (α/r)·B·A`` with ``B`` initialized to zero, so that a freshly wrapped
model computes exactly what the original computes.

- :class:`LoRALinear`: ``A`` is (r, in), ``B`` is (out, r).
- :class:`LoRAConv2d`: the layout of Microsoft's ``loralib`` ``ConvLoRA``, which AutoLoRa's
  official code uses for every convolution: for a k×k kernel ``A`` is (r·k, C_in·k) and ``B`` is
  (C_out/groups·k, r·k), and ``B·A`` is reshaped to the weight's shape.

A layer's :attr:`~LoRALayer.enabled` switch selects the forward path: ``W + ΔW`` (enabled, the
default) or ``W`` alone. AutoLoRa routes its natural and adversarial losses this way
(:func:`lora_enabled`). With the branch enabled the layer runs with the summed weight
``W + ΔW``, so :func:`merge_lora` (``W ← W + ΔW``, the plain layer back) gives bit-for-bit the
same outputs; :func:`remove_lora` drops the branches and keeps ``W``.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_robust.models.heads import find_head
from lit_robust.models.normalize import NormalizedClassifier

InitA = Literal["kaiming_uniform", "normal"]


class LoRALayer(nn.Module):
    """Common part of the LoRA layers: rank, scale, dropout, the path switch and merging.

    Args:
        base: the wrapped ``nn.Linear`` or ``nn.Conv2d`` (kept as ``self.base``).
        rank: r, the rank of the update (> 0).
        alpha: α; the update is scaled by α/r.
        dropout: dropout on the branch's input while training (0 disables it).
        init_a: ``"kaiming_uniform"`` (LoRA's init of ``A``, as ``nn.Linear``) or ``"normal"``
            (N(0, 1), as ``loralib``'s and AutoLoRa's convolutions); ``B`` starts at zero.

    Raises:
        ValueError: for ``rank <= 0``, ``alpha <= 0``, a dropout outside [0, 1) or an unknown
            ``init_a``.
    """

    def __init__(self, base: nn.Module, rank: int, alpha: float, dropout: float,
                 init_a: InitA) -> None:
        super().__init__()
        check_lora_arguments(rank, alpha, dropout)
        if init_a not in ("kaiming_uniform", "normal"):
            raise ValueError(f"init_a must be 'kaiming_uniform' or 'normal', got {init_a!r}")
        self.base = base
        self.rank = rank
        self.alpha = alpha
        self.scaling = alpha / rank
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.enabled = True
        self.init_a = init_a

    def _init_factors(self) -> None:
        if self.init_a == "normal":
            nn.init.normal_(self.lora_A)
        else:
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B)

    def delta_weight(self) -> Tensor:
        """ΔW = (α/r)·B·A in the shape of the base weight."""
        return (self.lora_B @ self.lora_A).view_as(self.base.weight) * self.scaling

    def uses_branch_input_dropout(self) -> bool:
        """Whether this forward applies dropout to the branch (training with dropout > 0)."""
        return self.training and isinstance(self.dropout, nn.Dropout)

    def merged(self) -> nn.Module:
        """The base layer with ``W + ΔW`` as its weight (a new plain layer; ``self`` unchanged)."""
        layer = _copy_layer(self.base)
        with torch.no_grad():
            layer.weight.copy_(self.base.weight + self.delta_weight())
        return layer


class LoRALinear(LoRALayer):
    """An ``nn.Linear`` with a low-rank update: ``y = x·(W + (α/r)·B·A)ᵀ + b``.

    Args: see :class:`LoRALayer`; ``base`` is an ``nn.Linear``.
    """

    def __init__(self, base: nn.Linear, rank: int = 8, alpha: float = 8.0,
                 dropout: float = 0.0, init_a: InitA = "kaiming_uniform") -> None:
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        super().__init__(base, rank, alpha, dropout, init_a)
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, **factory))
        self.lora_B = nn.Parameter(torch.empty(base.out_features, rank, **factory))
        self._init_factors()

    def forward(self, x: Tensor) -> Tensor:
        if not self.enabled:
            return self.base(x)
        if self.uses_branch_input_dropout():
            branch = F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B)
            return self.base(x) + branch * self.scaling
        return F.linear(x, self.base.weight + self.delta_weight(), self.base.bias)


class LoRAConv2d(LoRALayer):
    """An ``nn.Conv2d`` with a low-rank update of its weight, in ``loralib``'s layout.

    For a kh×kw kernel: ``A`` is (r·kh, C_in·kw), ``B`` is (C_out/groups·kh, r·kh), and
    ``ΔW = (α/r)·(B·A)`` reshaped to (C_out, C_in/groups, kh, kw).

    Args: see :class:`LoRALayer`; ``base`` is an ``nn.Conv2d``.
    """

    def __init__(self, base: nn.Conv2d, rank: int = 8, alpha: float = 8.0,
                 dropout: float = 0.0, init_a: InitA = "kaiming_uniform") -> None:
        if not isinstance(base, nn.Conv2d):
            raise TypeError(f"LoRAConv2d wraps an nn.Conv2d, got {type(base).__name__}")
        super().__init__(base, rank, alpha, dropout, init_a)
        kh, kw = base.kernel_size
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(rank * kh, base.in_channels * kw, **factory))
        self.lora_B = nn.Parameter(
            torch.empty(base.out_channels // base.groups * kh, rank * kh, **factory))
        self._init_factors()

    def forward(self, x: Tensor) -> Tensor:
        if not self.enabled:
            return self.base(x)
        if self.uses_branch_input_dropout():
            branch = self.base._conv_forward(self.dropout(x), self.delta_weight(), None)
            return self.base(x) + branch
        return self.base._conv_forward(x, self.base.weight + self.delta_weight(), self.base.bias)


def check_lora_arguments(rank: int, alpha: float, dropout: float) -> None:
    """Reject a LoRA setting that cannot work, before any model is touched.

    Raises:
        ValueError: for ``rank <= 0``, ``alpha <= 0`` or a dropout outside [0, 1).
    """
    if not isinstance(rank, int) or rank <= 0:
        raise ValueError(f"the LoRA rank must be a positive integer, got {rank!r}; e.g. rank: 8")
    if alpha <= 0:
        raise ValueError(f"the LoRA alpha must be > 0 (the update is scaled by alpha/rank), "
                         f"got {alpha}")
    if not 0 <= dropout < 1:
        raise ValueError(f"the LoRA dropout must be in [0, 1), got {dropout}")


def _copy_layer(layer: nn.Module) -> nn.Module:
    """A new layer of the same class and hyperparameters holding copies of the parameters."""
    if isinstance(layer, nn.Linear):
        new = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None,
                        device=layer.weight.device, dtype=layer.weight.dtype)
    else:
        new = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                        stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                        groups=layer.groups, bias=layer.bias is not None,
                        padding_mode=layer.padding_mode, device=layer.weight.device,
                        dtype=layer.weight.dtype)
    new.load_state_dict(layer.state_dict())
    new.requires_grad_(layer.weight.requires_grad)
    return new


def lora_candidates(
    model: nn.Module,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    skip_first_conv: bool = True,
) -> list[str]:
    """Names of the layers that get LoRA branches, in model order.

    Candidates are every ``nn.Conv2d`` and ``nn.Linear`` except the classifier head (which
    trains fully in every method) and, with ``skip_first_conv``, the first convolution (a CNN's
    stem, a ViT's or ConvNeXt's patch embedding). For a timm ViT these are the attention
    projections (``attn.qkv``, ``attn.proj``) and the MLPs (``mlp.fc1``, ``mlp.fc2``); for a
    ResNet every convolution after the stem, shortcuts included.

    Args:
        model: the model (a :class:`NormalizedClassifier` or a plain backbone).
        include: ``fnmatch`` patterns of module names; only candidates matching one are kept
            (``None`` keeps all), e.g. ``["*.attn.qkv", "*.attn.proj"]``.
        exclude: patterns of module names to leave without a branch.
        skip_first_conv: leave the first convolution without a branch.
    """
    head = _head_of(model)
    names = []
    first_conv_seen = False
    for name, module in model.named_modules():
        if not name or not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        if _inside_lora(model, name):
            continue
        if isinstance(module, nn.Conv2d) and not first_conv_seen:
            first_conv_seen = True
            if skip_first_conv:
                continue
        if module is head:
            continue
        if include is not None and not any(fnmatch.fnmatchcase(name, p) for p in include):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in exclude):
            continue
        names.append(name)
    return names


def add_lora(
    model: nn.Module,
    rank: int = 8,
    alpha: float = 8.0,
    dropout: float = 0.0,
    init_a: InitA = "kaiming_uniform",
    include: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    skip_first_conv: bool = True,
) -> list[str]:
    """Wrap every candidate layer (:func:`lora_candidates`) in place with a LoRA layer.

    Only the new factors are created; which parameters train is the caller's choice (see
    :mod:`lit_robust.models.peft`).

    Returns:
        The names of the wrapped layers.

    Raises:
        ValueError: for a bad rank, alpha or dropout, or when no layer is eligible (the message
            lists the model's convolution and linear layers).
    """
    check_lora_arguments(rank, alpha, dropout)
    names = lora_candidates(model, include, exclude, skip_first_conv)
    if not names:
        layers = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        raise ValueError(
            f"LoRA found no eligible layer in {type(model).__name__} (include={include}, "
            f"exclude={list(exclude)}, skip_first_conv={skip_first_conv}): LoRA adapts "
            f"nn.Conv2d and nn.Linear layers other than the classifier head; the model's are "
            f"{layers or 'none'}"
        )
    for name in names:
        layer = model.get_submodule(name)
        wrapper = LoRAConv2d if isinstance(layer, nn.Conv2d) else LoRALinear
        _set_submodule(model, name, wrapper(layer, rank=rank, alpha=alpha, dropout=dropout,
                                            init_a=init_a))
    return names


def lora_layers(model: nn.Module) -> list[LoRALayer]:
    """Every LoRA layer of ``model``, in model order."""
    return [m for m in model.modules() if isinstance(m, LoRALayer)]


def lora_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """The LoRA factors ``A`` and ``B`` of every LoRA layer."""
    for layer in lora_layers(model):
        yield layer.lora_A
        yield layer.lora_B


@contextmanager
def lora_enabled(model: nn.Module, enabled: bool) -> Iterator[nn.Module]:
    """Run the block with every LoRA branch on (``W + ΔW``) or off (``W``), then restore."""
    layers = lora_layers(model)
    previous = [layer.enabled for layer in layers]
    for layer in layers:
        layer.enabled = enabled
    try:
        yield model
    finally:
        for layer, was in zip(layers, previous, strict=True):
            layer.enabled = was


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every enabled LoRA branch into its layer's weight (``W ← W + ΔW``), in place.

    Each LoRA layer becomes a plain ``nn.Linear`` / ``nn.Conv2d`` with the summed weight, so the
    model has its original architecture and state-dict keys (for export) and computes the
    same outputs as the enabled branches did. A disabled layer (``enabled = False``) is
    replaced by its base layer unchanged. Returns ``model``.

    Raises:
        ValueError: when ``model`` has no LoRA layer.
    """
    return _replace_lora(model, merge=True)


def remove_lora(model: nn.Module) -> nn.Module:
    """Drop every LoRA branch and keep the base layers (``W`` alone), in place; returns
    ``model``. AutoLoRa's deployed network is this: its LoRA branch only serves training.

    Raises:
        ValueError: when ``model`` has no LoRA layer.
    """
    return _replace_lora(model, merge=False)


def _replace_lora(model: nn.Module, merge: bool) -> nn.Module:
    names = [name for name, m in model.named_modules() if isinstance(m, LoRALayer)]
    if not names:
        raise ValueError(f"{type(model).__name__} has no LoRA layer: nothing to merge or remove")
    for name in names:
        layer = model.get_submodule(name)
        plain = layer.merged() if merge and layer.enabled else layer.base
        _set_submodule(model, name, plain)
    return model


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, module)


def _inside_lora(model: nn.Module, name: str) -> bool:
    parts = name.split(".")
    return any(isinstance(model.get_submodule(".".join(parts[:i])), LoRALayer)
               for i in range(1, len(parts)))


def _head_of(model: nn.Module) -> nn.Module | None:
    net = model.net if isinstance(model, NormalizedClassifier) else model
    try:
        return find_head(net)[1]
    except ValueError:
        return None
