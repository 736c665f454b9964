"""Parameter selections: which parameters of a model train (LoRA, adapters, bias-only).

Any method takes one as ``peft`` (:class:`~lit_robust.methods.base.RobustClassifier`): after the
pre-trained weights are loaded and the method's own surgery is done (TWINS' dual BatchNorm,
...), :meth:`ParameterSelection.apply` adds the new modules and freezes everything else. The
classifier head always trains (a transferred model gets a new one). Without ``peft`` every
parameter trains (full fine-tuning).

In YAML::

    peft:
      class_path: lit_robust.models.peft.LoRA
      init_args: {rank: 8, alpha: 8}

The selections follow the parameter-efficient variants that RoLI (Hua et al., "Initialization
Matters for Adversarial Transfer Learning", CVPR 2024) fine-tunes adversarially: LoRA (Hu et
al., ICLR 2022), Pfeiffer adapters after each block's MLP (Pfeiffer et al., EACL 2021), and
bias-only tuning (TinyTL, Cai et al., NeurIPS 2020; BitFit, Ben Zaken et al., ACL 2022).
"""

from __future__ import annotations

import fnmatch
from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lit_robust.models.lora import add_lora, check_lora_arguments, lora_parameters
from lit_robust.models.surgery import freeze, get_head, unfreeze


class ParameterSelection(ABC):
    """Base class: :meth:`apply` changes a model in place so that only the selected
    parameters train.

    Args:
        also_train: ``fnmatch`` patterns of parameter names that train as well (e.g.
            ``["*bn*"]`` for BatchNorm affine parameters next to LoRA).
    """

    def __init__(self, also_train: Sequence[str] = ()) -> None:
        self.also_train = list(also_train)

    def apply(self, model: nn.Module) -> nn.Module:
        """Add this selection's modules, freeze the rest, unfreeze the selection and the head."""
        self.add_modules(model)
        freeze(model)
        for param in self.selected(model):
            param.requires_grad_(True)
        unfreeze(get_head(model)[1])
        for name, param in model.named_parameters():
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in self.also_train):
                param.requires_grad_(True)
        return model

    @abstractmethod
    def add_modules(self, model: nn.Module) -> None:
        """Insert the selection's new modules (LoRA branches, adapters), in place."""

    @abstractmethod
    def selected(self, model: nn.Module) -> list[nn.Parameter]:
        """The parameters this selection trains (the head is added by :meth:`apply`)."""

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in vars(self).items())
        return f"{type(self).__name__}({args})"


class LoRA(ParameterSelection):
    """Low-rank updates of the convolutions and linear layers; only the factors train.

    Defaults put a branch on every ``nn.Conv2d`` and ``nn.Linear`` except the head and the
    first convolution (the stem / patch embedding): a timm ViT's attention projections and
    MLPs, a ConvNeXt's depthwise convolutions and MLPs, every convolution of a ResNet after the
    stem (:func:`lit_robust.models.lora.lora_candidates`). RoLI's LoRA adapts only the query
    and value projections of a ViT with rank 16, α 16, dropout 0.1; timm fuses them into
    ``attn.qkv``, so ``include: ["*.attn.qkv"]`` is the closest selection.

    Args:
        rank: r (> 0).
        alpha: α; the update is scaled by α/r.
        dropout: dropout on the branches' input while training.
        include: ``fnmatch`` patterns of module names to adapt (``None``: every candidate).
        exclude: patterns of module names not to adapt.
        skip_first_conv: leave the first convolution without a branch.
        also_train: patterns of other parameter names that train too.

    Raises:
        ValueError: for ``rank <= 0``, ``alpha <= 0`` or a dropout outside [0, 1) (at once),
            and from :meth:`apply` when the model has no eligible layer.
    """

    def __init__(self, rank: int = 8, alpha: float = 8.0, dropout: float = 0.0,
                 include: Sequence[str] | None = None, exclude: Sequence[str] = (),
                 skip_first_conv: bool = True, also_train: Sequence[str] = ()) -> None:
        check_lora_arguments(rank, alpha, dropout)
        super().__init__(also_train)
        self.rank = rank
        self.alpha = alpha
        self.dropout = dropout
        self.include = None if include is None else list(include)
        self.exclude = list(exclude)
        self.skip_first_conv = skip_first_conv

    def add_modules(self, model: nn.Module) -> None:
        add_lora(model, rank=self.rank, alpha=self.alpha, dropout=self.dropout,
                 include=self.include, exclude=self.exclude,
                 skip_first_conv=self.skip_first_conv)

    def selected(self, model: nn.Module) -> list[nn.Parameter]:
        return list(lora_parameters(model))


class Adapter(nn.Module):
    """A bottleneck adapter added to a module's output: ``y + up(GELU(down(y)))``.

    Pfeiffer et al. (EACL 2021), in the placement RoLI's (and VPT's) ViT uses: after the MLP of
    each transformer block, inside its residual connection. ``down`` has the default
    initialization of its layer type and ``up`` starts at zero, so a new adapter is the
    identity and both projections train. (RoLI's code initializes both to zero, which leaves
    ``down`` without a gradient forever and trains only ``up``'s bias.)

    Token and channels-last features (the last dimension is the channel) use linear layers;
    an MLP ending in a convolution (NCHW) uses 1×1 convolutions.

    Args:
        module: the wrapped module (kept as ``self.module``).
        channels: the channels of the module's output.
        reduction: the bottleneck is ``channels // reduction`` wide (at least 1).
        conv: use 1×1 convolutions over NCHW features instead of linear layers.
    """

    def __init__(self, module: nn.Module, channels: int, reduction: int = 8,
                 conv: bool = False) -> None:
        super().__init__()
        if reduction < 1:
            raise ValueError(f"the adapter reduction must be >= 1, got {reduction}")
        hidden = max(1, channels // reduction)
        self.module = module
        if conv:
            self.down: nn.Module = nn.Conv2d(channels, hidden, 1)
            self.up: nn.Module = nn.Conv2d(hidden, channels, 1)
        else:
            self.down = nn.Linear(channels, hidden)
            self.up = nn.Linear(hidden, channels)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.module(x)
        return out + self.up(self.act(self.down(out)))


class Adapters(ParameterSelection):
    """Bottleneck adapters after the MLP of every transformer or ConvNeXt block; only the
    adapters (and the head) train.

    Args:
        reduction: bottleneck reduction factor (8 in RoLI).
        targets: ``fnmatch`` patterns of the modules whose output gets an adapter (default:
            every module named ``mlp``, as in timm's ViT, Swin and ConvNeXt blocks).
        also_train: patterns of other parameter names that train too.

    Raises:
        ValueError: for ``reduction < 1``, and from :meth:`apply` when no module matches.
    """

    def __init__(self, reduction: int = 8, targets: Sequence[str] = ("*.mlp",),
                 also_train: Sequence[str] = ()) -> None:
        if reduction < 1:
            raise ValueError(f"the adapter reduction must be >= 1, got {reduction}")
        super().__init__(also_train)
        self.reduction = reduction
        self.targets = list(targets)

    def add_modules(self, model: nn.Module) -> None:
        names = [name for name, _ in model.named_modules()
                 if name and any(fnmatch.fnmatchcase(name, p) for p in self.targets)]
        if not names:
            raise ValueError(
                f"Adapters found no module matching {self.targets} in {type(model).__name__}: "
                "adapters go after the MLP of transformer or ConvNeXt blocks (timm ViT, Swin, "
                "ConvNeXt); for a network without MLP blocks (e.g. a ResNet) use LoRA or "
                "BiasOnly, or name the modules with targets"
            )
        for name in names:
            module = model.get_submodule(name)
            channels, conv = _output_channels(module, name)
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, Adapter(module, channels, self.reduction, conv=conv))

    def selected(self, model: nn.Module) -> list[nn.Parameter]:
        return [p for m in model.modules() if isinstance(m, Adapter)
                for p in (*m.down.parameters(), *m.up.parameters())]


class BiasOnly(ParameterSelection):
    """Only the biases train (every parameter named ``*bias``: convolutions, linear layers and
    normalization layers), plus the head, as RoLI's bias tuning ("tinytl-bias").

    Args:
        also_train: patterns of other parameter names that train too.

    Raises:
        ValueError: from :meth:`apply` when the model has no bias outside the head.
    """

    def add_modules(self, model: nn.Module) -> None:
        """Bias tuning adds no module."""

    def selected(self, model: nn.Module) -> list[nn.Parameter]:
        head = {id(p) for p in get_head(model)[1].parameters()}
        biases = [p for name, p in model.named_parameters()
                  if name.rsplit(".", 1)[-1] == "bias" and id(p) not in head]
        if not biases:
            raise ValueError(f"BiasOnly: {type(model).__name__} has no bias outside its head; "
                             "there is nothing to tune but the head")
        return biases


def _output_channels(module: nn.Module, name: str) -> tuple[int, bool]:
    """The output channels of an MLP (its last linear or convolution layer) and whether that
    layer is a convolution."""
    layers = [m for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not layers:
        raise ValueError(f"Adapters: the module {name} has no linear or convolution layer to "
                         "read its output width from")
    last = layers[-1]
    if isinstance(last, nn.Linear):
        return last.out_features, False
    return last.out_channels, True


def trainable_parameter_count(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` numbers of parameter elements of ``model``."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


# Checkpoints record a method's selection among its hyperparameters; allow it in weights-only
# loads.
torch.serialization.add_safe_globals([LoRA, Adapters, BiasOnly])
