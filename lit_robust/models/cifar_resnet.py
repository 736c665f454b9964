"""ResNets for 32×32 inputs: a 3×3 stem without max-pooling (He et al., CVPR 2016).

The module names (``conv1``, ``bn1``, ``layerL.B.conv1``, ``layerL.B.shortcut.0``, ``linear``)
follow the CIFAR ResNet used throughout the adversarial-robustness literature (e.g. the
ResNet-18 shipped with AutoAttack), so its published state dicts load with ``strict=True``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Sequential:
    if stride == 1 and in_planes == out_planes:
        return nn.Sequential()
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(out_planes),
    )


def _add(residual: Tensor, shortcut: Tensor, average: bool) -> Tensor:
    """``residual + shortcut``, or ``½·residual + ½·shortcut`` when ``average``."""
    if average:
        return 0.5 * residual + 0.5 * shortcut
    return residual + shortcut


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers with an identity (or 1×1 conv-BN) shortcut.

    Attributes:
        average_branches: when ``True`` the block adds ½·residual + ½·shortcut instead of their
            sum (CARTL's non-expansive fine-tuning sets it on the fine-tuned blocks).
            ``False`` by default.
    """

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(in_planes, planes, stride)
        self.average_branches = False

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(_add(out, self.shortcut(x), self.average_branches))


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3, 1×1 expand (×4) conv-BN layers with a projection shortcut.

    Attributes:
        average_branches: as for :class:`BasicBlock`.
    """

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.shortcut = _shortcut(in_planes, planes * self.expansion, stride)
        self.average_branches = False

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(_add(out, self.shortcut(x), self.average_branches))


class CifarResNet(nn.Module):
    """ResNet with a 3×3 stride-1 stem, four stages (64-128-256-512 planes) and a linear head.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        num_blocks: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
        num_classes: outputs of the ``linear`` head.
        in_channels: input image channels.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        num_blocks: tuple[int, int, int, int],
        num_classes: int = 10,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self._in_planes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._make_layer(block, 64, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, 128, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(block, 256, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(block, 512, num_blocks[3], stride=2)
        self.num_features = 512 * block.expansion
        self.linear = nn.Linear(self.num_features, num_classes)

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, count: int, stride: int
    ) -> nn.Sequential:
        layers = []
        for block_stride in [stride] + [1] * (count - 1):
            layers.append(block(self._in_planes, planes, block_stride))
            self._in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward_features(self, x: Tensor) -> Tensor:
        """Globally average-pooled output of the last stage, shape (N, ``num_features``)."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        """Logits of shape (N, num_classes)."""
        return self.linear(self.forward_features(x))


def resnet18(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    """CIFAR ResNet-18 (BasicBlock, 2-2-2-2)."""
    return CifarResNet(BasicBlock, (2, 2, 2, 2), num_classes, in_channels)


def resnet34(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    """CIFAR ResNet-34 (BasicBlock, 3-4-6-3)."""
    return CifarResNet(BasicBlock, (3, 4, 6, 3), num_classes, in_channels)


def resnet50(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    """CIFAR ResNet-50 (Bottleneck, 3-4-6-3)."""
    return CifarResNet(Bottleneck, (3, 4, 6, 3), num_classes, in_channels)
