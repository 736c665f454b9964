"""Ordered blocks of a backbone and CARTL's "last k blocks" surgery.

Chen et al., "CARTL: Cooperative Adversarially-Robust Transfer Learning", ICML 2021, count a
network as a stem followed by an ordered list of blocks whose last entry is the classifier;
global average pooling sits between the last two entries. A :class:`BlockLayout` holds that
view for one backbone (it shares its modules with the network):

- ``WideResNet``: stem ``conv1``; 3n residual blocks, BN + ReLU, ``fc`` (14 blocks for
  WRN-28-4, 17 for WRN-34-10);
- ``CifarResNet``: stem ``conv1``, ``bn1``, ReLU; residual blocks, ``linear`` (9 for
  ResNet-18, 17 for ResNet-34 and ResNet-50);
- ``PreActResNet``: stem ``conv1``; residual blocks, BN + ReLU, ``linear`` (10 for PreAct
  ResNet-18);
- torchvision ``ResNet``: stem ``conv1``, ``bn1``, ReLU, max-pool; residual blocks, ``fc``
  (17 for ResNet-50);
- ``TinyCNN``: no stem; the four conv-BN-ReLU layers (with their max-pooling), ``linear`` (5).

Every function accepts the backbone or its :class:`NormalizedClassifier`; other backbones get
a layout with :func:`register_block_layout`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torchvision.models import resnet as tv_resnet

from lit_robust.models.cifar_resnet import CifarResNet
from lit_robust.models.normalize import NormalizedClassifier
from lit_robust.models.preact_resnet import PreActResNet
from lit_robust.models.tiny import TinyCNN
from lit_robust.models.wide_resnet import WideResNet


@dataclass(frozen=True)
class BlockLayout:
    """A backbone as ``head(pool(blocks[-2](⋯ blocks[0](stem(x)))))``.

    Attributes:
        stem: maps the (normalized) input to the input of ``blocks[0]``; never trained.
        blocks: the ordered blocks; the last one is the classifier, applied to globally
            average-pooled features.
    """

    stem: nn.Module
    blocks: list[nn.Module]


class NoBlockLayoutError(TypeError):
    """A backbone without a registered :class:`BlockLayout`; the message lists those with one."""


class BlockCountError(ValueError):
    """A ``k`` outside ``1..block_count(model)``; the message names the count."""


LayoutFactory = Callable[[nn.Module], BlockLayout]
_LAYOUTS: dict[type[nn.Module], LayoutFactory] = {}


def register_block_layout(
    backbone_type: type[nn.Module],
) -> Callable[[LayoutFactory], LayoutFactory]:
    """Decorator that gives every ``backbone_type`` instance a :class:`BlockLayout`.

    Example::

        @register_block_layout(MyNet)
        def my_net_layout(net: MyNet) -> BlockLayout:
            return BlockLayout(stem=net.stem, blocks=[*net.stages, net.fc])
    """

    def decorate(factory: LayoutFactory) -> LayoutFactory:
        _LAYOUTS[backbone_type] = factory
        return factory

    return decorate


def backbone_of(model: nn.Module) -> nn.Module:
    """The backbone inside a :class:`NormalizedClassifier` (or ``model`` itself)."""
    return model.net if isinstance(model, NormalizedClassifier) else model


def block_layout(model: nn.Module) -> BlockLayout:
    """The stem and ordered blocks of a backbone (built afresh, sharing its modules).

    Raises:
        NoBlockLayoutError: for a backbone without a registered layout.
    """
    net = backbone_of(model)
    for backbone_type in type(net).__mro__:
        if backbone_type in _LAYOUTS:
            return _LAYOUTS[backbone_type](net)
    known = ", ".join(sorted(_qualified_name(t) for t in _LAYOUTS))
    raise NoBlockLayoutError(
        f"{_qualified_name(type(net))} has no block enumeration, so 'the last k blocks' is "
        f"undefined for it; the backbone classes that have one: {known}. Register one with "
        "lit_robust.models.blocks.register_block_layout"
    )


def _qualified_name(cls: type) -> str:
    """``module.Class``: a timm ``ResNet`` and torchvision's ``ResNet`` are different classes."""
    return f"{cls.__module__}.{cls.__qualname__}"


def blocks(model: nn.Module) -> list[nn.Module]:
    """The ordered blocks of ``model`` (the classifier last, the stem not included)."""
    return block_layout(model).blocks


def block_count(model: nn.Module) -> int:
    """Number of blocks of ``model`` (e.g. 17 for WRN-34-10)."""
    return len(blocks(model))


def check_k(model: nn.Module, k: int) -> int:
    """Return ``k`` if ``1 <= k <= block_count(model)``.

    Raises:
        BlockCountError: naming the model's block count when ``k`` is out of range.
    """
    count = block_count(model)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= count:
        name = type(backbone_of(model)).__name__
        raise BlockCountError(
            f"k={k!r} is out of range: {name} has {count} blocks (the classifier is the last, "
            f"the stem is never trained); choose 1 <= k <= {count}"
        )
    return k


def last_blocks(model: nn.Module, k: int) -> list[nn.Module]:
    """The last ``k`` blocks of ``model`` (``k`` checked by :func:`check_k`)."""
    return blocks(model)[-check_k(model, k):]


def _resolve(index: int, count: int) -> int:
    if not -count <= index < count:
        raise IndexError(f"block index {index} out of range for {count} blocks")
    return index % count


def _pool(h: Tensor) -> Tensor:
    return F.adaptive_avg_pool2d(h, 1).flatten(1)


def forward_until(model: nn.Module, x: Tensor, index: int) -> Tensor:
    """The input of ``blocks(model)[index]`` (negative indices count from the end).

    ``x`` is what ``model`` takes: pixel-space images for a :class:`NormalizedClassifier`
    (normalized here), normalized images for a bare backbone. For the classifier (the last
    index) this is the pooled feature vector, shape (N, D).
    """
    if isinstance(model, NormalizedClassifier):
        x = model.normalize(x)
    layout = block_layout(model)
    count = len(layout.blocks)
    index = _resolve(index, count)
    h = layout.stem(x)
    for block in layout.blocks[: min(index, count - 1)]:
        h = block(h)
    return _pool(h) if index == count - 1 else h


def forward_from(model: nn.Module, h: Tensor, index: int) -> Tensor:
    """Logits from ``h``, the input of ``blocks(model)[index]``."""
    layout = block_layout(model)
    count = len(layout.blocks)
    index = _resolve(index, count)
    for block in layout.blocks[index:-1]:
        h = block(h)
    if index < count - 1:
        h = _pool(h)
    return layout.blocks[-1](h)


# ---------------------------------------------------------------------------- freezing, BN
def freeze_all_but_last(
    model: nn.Module, k: int, freeze_bn_affine: bool = False
) -> list[nn.Parameter]:
    """Train only the last ``k`` blocks: every other parameter (the stem's included) is frozen.

    Args:
        model: the classifier or its backbone; changed in place.
        k: number of trailing blocks that train (1 = the classifier only).
        freeze_bn_affine: also freeze the affine γ and β of the BatchNorms inside the last
            ``k`` blocks.

    Returns:
        The parameters that still train, in model order.

    Raises:
        ValueError: when ``k`` is out of range (see :func:`check_k`).
    """
    tuned = last_blocks(model, k)
    model.requires_grad_(False)
    for block in tuned:
        block.requires_grad_(True)
        if freeze_bn_affine:
            for layer in block.modules():
                if isinstance(layer, _BatchNorm):
                    layer.requires_grad_(False)
    return [p for p in model.parameters() if p.requires_grad]


def extractor_batchnorms(model: nn.Module, k: int) -> list[_BatchNorm]:
    """The BatchNorms outside the last ``k`` blocks (the stem's included), in model order.

    Keep them in eval mode (:func:`~lit_robust.models.surgery.set_bn_eval`, after every
    ``train()``) to reuse the source's running statistics.
    """
    tuned = {id(m) for block in last_blocks(model, k) for m in block.modules()}
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and id(m) not in tuned]


# ---------------------------------------------------------------------------- residual averaging
_TORCHVISION_BLOCKS = (tv_resnet.BasicBlock, tv_resnet.Bottleneck)


def _halve_output(_module: nn.Module, _args: tuple[Tensor, ...], output: Tensor) -> Tensor:
    # torchvision blocks end with ReLU(residual + shortcut); ReLU is positively homogeneous,
    # so ½·ReLU(a + b) = ReLU(½·a + ½·b) exactly (scaling by ½ is exact in floating point).
    return 0.5 * output


def _halving_hook_ids(module: nn.Module) -> list[int]:
    return [key for key, hook in module._forward_hooks.items() if hook is _halve_output]


def is_residual_block(module: nn.Module) -> bool:
    """Whether ``module`` is a residual block whose addition can be averaged."""
    return hasattr(module, "average_branches") or isinstance(module, _TORCHVISION_BLOCKS)


def set_average_branches(module: nn.Module, enabled: bool = True) -> bool:
    """Make a residual block compute ½·shortcut + ½·residual (or the plain sum again).

    Blocks of this package have an ``average_branches`` attribute; torchvision's ResNet blocks
    get a forward hook that halves their output, which equals averaging the two branches
    before the final ReLU.

    Returns:
        ``True`` for a residual block, ``False`` (nothing changed) for any other module.
    """
    if hasattr(module, "average_branches"):
        module.average_branches = enabled
        return True
    if isinstance(module, _TORCHVISION_BLOCKS):
        for key in _halving_hook_ids(module):
            del module._forward_hooks[key]
        if enabled:
            module.register_forward_hook(_halve_output)
        return True
    return False


def averages_branches(module: nn.Module) -> bool:
    """Whether a residual block currently averages its branches."""
    if hasattr(module, "average_branches"):
        return bool(module.average_branches)
    return bool(_halving_hook_ids(module))


# ---------------------------------------------------------------------------- layouts
@register_block_layout(WideResNet)
def _wide_resnet_layout(net: WideResNet) -> BlockLayout:
    return BlockLayout(stem=net.conv1, blocks=net.blocks())


@register_block_layout(CifarResNet)
def _cifar_resnet_layout(net: CifarResNet) -> BlockLayout:
    residual = [*net.layer1, *net.layer2, *net.layer3, *net.layer4]
    return BlockLayout(stem=nn.Sequential(net.conv1, net.bn1, nn.ReLU()),
                       blocks=[*residual, net.linear])


@register_block_layout(PreActResNet)
def _preact_resnet_layout(net: PreActResNet) -> BlockLayout:
    residual = [*net.layer1, *net.layer2, *net.layer3, *net.layer4]
    return BlockLayout(stem=net.conv1,
                       blocks=[*residual, nn.Sequential(net.bn, nn.ReLU()), net.linear])


@register_block_layout(tv_resnet.ResNet)
def _torchvision_resnet_layout(net: tv_resnet.ResNet) -> BlockLayout:
    residual = [*net.layer1, *net.layer2, *net.layer3, *net.layer4]
    return BlockLayout(stem=nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool),
                       blocks=[*residual, net.fc])


@register_block_layout(TinyCNN)
def _tiny_cnn_layout(net: TinyCNN) -> BlockLayout:
    pooled = [nn.Sequential(layer, net.pool) for layer in (net.layer1, net.layer2, net.layer3)]
    return BlockLayout(stem=nn.Identity(), blocks=[*pooled, net.layer4, net.linear])
