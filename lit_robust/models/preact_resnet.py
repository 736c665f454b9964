"""Pre-activation ResNet-18 for 32×32 inputs.

He et al., "Identity Mappings in Deep Residual Networks", ECCV 2016, in the CIFAR variant of
Wong et al. ("Fast is better than free", ICLR 2020) and Rice et al. ("Overfitting in
adversarially robust deep learning", ICML 2020). Module names match their code, so their
checkpoints load once a DataParallel ``module.`` prefix is stripped.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class PreActBlock(nn.Module):
    """BN-ReLU-conv ×2; the projection shortcut (if any) reads the pre-activated input.

    Attributes:
        average_branches: when ``True`` the block returns ½·residual + ½·shortcut instead of
            their sum (CARTL's non-expansive fine-tuning sets it on the fine-tuned blocks).
            ``False`` by default.
    """

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Sequential | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False)
            )
        self.average_branches = False

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        if self.average_branches:
            return 0.5 * out + 0.5 * shortcut
        return out + shortcut


class PreActResNet(nn.Module):
    """Pre-activation ResNet: 3×3 stem conv, four stages, final BN-ReLU, ``linear`` head.

    Args:
        num_blocks: blocks per stage, ``(2, 2, 2, 2)`` for PreAct ResNet-18.
        num_classes: outputs of the head.
        in_channels: input image channels.
    """

    def __init__(
        self,
        num_blocks: tuple[int, int, int, int] = (2, 2, 2, 2),
        num_classes: int = 10,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self._in_planes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.layer1 = self._make_layer(64, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(128, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(256, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(512, num_blocks[3], stride=2)
        self.bn = nn.BatchNorm2d(512)
        self.num_features = 512
        self.linear = nn.Linear(512, num_classes)

    def _make_layer(self, planes: int, count: int, stride: int) -> nn.Sequential:
        layers = []
        for block_stride in [stride] + [1] * (count - 1):
            layers.append(PreActBlock(self._in_planes, planes, block_stride))
            self._in_planes = planes
        return nn.Sequential(*layers)

    def forward_features(self, x: Tensor) -> Tensor:
        """Globally average-pooled, activated last stage, shape (N, 512)."""
        out = self.conv1(x)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.relu(self.bn(out))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        """Logits of shape (N, num_classes)."""
        return self.linear(self.forward_features(x))


def preact_resnet18(num_classes: int = 10, in_channels: int = 3) -> PreActResNet:
    """PreAct ResNet-18 (2-2-2-2 pre-activation basic blocks)."""
    return PreActResNet((2, 2, 2, 2), num_classes, in_channels)
