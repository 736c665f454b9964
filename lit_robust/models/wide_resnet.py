"""Pre-activation Wide ResNets (Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016).

Module names follow the WRN code of TRADES/MART/CARTL (``conv1``, ``block1.layer.0.bn1``,
``convShortcut``, ``bn1``, ``fc``), so their state dicts load with ``strict=True``. The same
keys do not make the same function: CARTL's official WideResNets activate with
LeakyReLU(0.1) (``activation="leaky_relu"`` here), TRADES' and MART's with ReLU (the default),
and an official NEFT output, saved with its spectral scaling folded into the weights, averages
the residual branches of its last k blocks (``average_last_k=k``).

CARTL (Chen et al., "Cartl: Cooperative Adversarially-Robust Transfer Learning", ICML 2021)
counts the network as 3n residual blocks, then the final BN + ReLU as one block, then the fc:
:meth:`WideResNet.blocks` returns exactly that list (17 entries for WRN-34-10, 14 for
WRN-28-4; the stem conv is not in it), and :meth:`WideResNet.forward_until` /
:meth:`WideResNet.forward_from` split the forward pass at any of those blocks.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

Activation = Literal["relu", "leaky_relu"]
LEAKY_SLOPE = 0.1  # CARTL's official WideResNets (src/networks/wrn.py): LeakyReLU(0.1)


def make_activation(activation: Activation) -> nn.Module:
    """``nn.ReLU()`` or CARTL's ``nn.LeakyReLU(0.1)``.

    Raises:
        ValueError: for another name.
    """
    if activation == "relu":
        return nn.ReLU()
    if activation == "leaky_relu":
        return nn.LeakyReLU(LEAKY_SLOPE)
    raise ValueError(f"activation must be 'relu' or 'leaky_relu', got {activation!r}")


class WideBasicBlock(nn.Module):
    """Pre-activation block: BN-act-conv3×3, BN-act-(dropout)-conv3×3, plus shortcut.

    When the width or stride changes, the shortcut is a 1×1 conv of the pre-activated input.
    ``act`` is ReLU or LeakyReLU(0.1) (``activation``); the modules ``relu1``/``relu2`` have no
    parameters, so the state dict is the same either way.

    Attributes:
        average_branches: when ``True`` the block returns ½·shortcut + ½·residual instead of
            their sum, which makes the addition non-expansive (CARTL's non-expansive
            fine-tuning sets it on the fine-tuned blocks). ``False`` by default.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int, dropout: float,
                 activation: Activation = "relu") -> None:
        super().__init__()
        self.relu1 = make_activation(activation)
        self.relu2 = make_activation(activation)
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.dropout = dropout
        self.convShortcut: nn.Conv2d | None = None
        if stride != 1 or in_planes != out_planes:
            self.convShortcut = nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)
        self.average_branches = False

    def forward(self, x: Tensor) -> Tensor:
        activated = self.relu1(self.bn1(x))
        shortcut = x if self.convShortcut is None else self.convShortcut(activated)
        out = self.relu2(self.bn2(self.conv1(activated)))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        out = self.conv2(out)
        if self.average_branches:
            return 0.5 * shortcut + 0.5 * out
        return shortcut + out


class NetworkBlock(nn.Module):
    """One stage of ``count`` wide blocks, kept as ``.layer`` (an ``nn.Sequential``)."""

    def __init__(
        self, count: int, in_planes: int, out_planes: int, stride: int, dropout: float,
        activation: Activation = "relu",
    ) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            *(
                WideBasicBlock(in_planes if i == 0 else out_planes, out_planes,
                               stride if i == 0 else 1, dropout, activation)
                for i in range(count)
            )
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """WRN-depth-widen_factor for 32×32 inputs: stem conv, three stages, BN-act, ``fc``.

    Args:
        depth: total depth; ``(depth - 4)`` must be divisible by 6 (n = (depth - 4) / 6
            blocks per stage), e.g. 28 or 34.
        widen_factor: width multiplier k (stage widths 16k, 32k, 64k).
        num_classes: outputs of the ``fc`` head.
        dropout: dropout probability between the two convs of each block.
        in_channels: input image channels.
        activation: ``relu`` (TRADES, MART, RobustBench) or ``leaky_relu`` (LeakyReLU(0.1),
            the activation of CARTL's official WideResNets; use it for their checkpoints and
            for CARTL's paper settings).
        average_last_k: the residual blocks among the last ``k`` CARTL blocks return
            ½·shortcut + ½·residual: the layout of an official CARTL NEFT output
            (``pwrn34``), whose saved weights already hold the spectral scaling. 0 (default)
            averages none.

    Raises:
        ValueError: for a depth that does not fit ``6n + 4``, a non-positive width, a
            dropout outside [0, 1), an unknown activation or ``average_last_k`` outside
            [0, number of blocks].
    """

    def __init__(
        self,
        depth: int = 34,
        widen_factor: int = 10,
        num_classes: int = 10,
        dropout: float = 0.0,
        in_channels: int = 3,
        activation: Activation = "relu",
        average_last_k: int = 0,
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(
                f"WideResNet depth must be 6n + 4 with n >= 1 (e.g. 28, 34), got {depth}"
            )
        if widen_factor < 1:
            raise ValueError(f"widen_factor must be >= 1, got {widen_factor}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.depth = depth
        self.widen_factor = widen_factor
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.activation = activation
        self.block1 = NetworkBlock(n, widths[0], widths[1], 1, dropout, activation)
        self.block2 = NetworkBlock(n, widths[1], widths[2], 2, dropout, activation)
        self.block3 = NetworkBlock(n, widths[2], widths[3], 2, dropout, activation)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.relu = make_activation(activation)
        self.num_features = widths[3]
        self.fc = nn.Linear(widths[3], num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
        count = len(self.blocks())
        if isinstance(average_last_k, bool) or not 0 <= average_last_k <= count:
            raise ValueError(f"average_last_k must be in [0, {count}] (the WRN's blocks), got "
                             f"{average_last_k!r}")
        for block in self.blocks()[count - average_last_k:] if average_last_k else []:
            if isinstance(block, WideBasicBlock):
                block.average_branches = True

    def blocks(self) -> list[nn.Module]:
        """The 3n residual blocks, the final BN + activation (one ``nn.Sequential``) and the fc.

        The list is built from the current submodules on each call (so it reflects any module
        replaced since); the final entry ``nn.Sequential(bn1, relu)`` shares its modules with
        the network. Global average pooling sits between the last two entries.
        """
        residual = [*self.block1.layer, *self.block2.layer, *self.block3.layer]
        return [*residual, nn.Sequential(self.bn1, self.relu), self.fc]

    def _resolve(self, index: int, count: int) -> int:
        if not -count <= index < count:
            raise IndexError(f"block index {index} out of range for {count} blocks")
        return index % count

    def forward_until(self, x: Tensor, index: int) -> Tensor:
        """The input of ``blocks()[index]`` (negative indices count from the end).

        For the fc (the last index) this is the pooled feature vector, shape (N, D).
        """
        blocks = self.blocks()
        index = self._resolve(index, len(blocks))
        h = self.conv1(x)
        for block in blocks[: min(index, len(blocks) - 1)]:
            h = block(h)
        if index == len(blocks) - 1:
            h = F.adaptive_avg_pool2d(h, 1).flatten(1)
        return h

    def forward_from(self, h: Tensor, index: int) -> Tensor:
        """Continue the forward pass from ``h``, the input of ``blocks()[index]``, to logits."""
        blocks = self.blocks()
        index = self._resolve(index, len(blocks))
        for block in blocks[index:-1]:
            h = block(h)
        if index < len(blocks) - 1:
            h = F.adaptive_avg_pool2d(h, 1).flatten(1)
        return blocks[-1](h)

    def forward_features(self, x: Tensor) -> Tensor:
        """Globally average-pooled, activated last stage, shape (N, ``num_features``)."""
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = self.relu(self.bn1(out))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        """Logits of shape (N, num_classes)."""
        return self.fc(self.forward_features(x))


def wrn_28_4(num_classes: int = 10, dropout: float = 0.0, in_channels: int = 3,
             activation: Activation = "relu", average_last_k: int = 0) -> WideResNet:
    """WRN-28-4 (n = 4 blocks per stage, 14 CARTL blocks). Arguments as :class:`WideResNet`."""
    return WideResNet(28, 4, num_classes, dropout, in_channels, activation, average_last_k)


def wrn_34_10(num_classes: int = 10, dropout: float = 0.0, in_channels: int = 3,
              activation: Activation = "relu", average_last_k: int = 0) -> WideResNet:
    """WRN-34-10 (n = 5 blocks per stage, 17 CARTL blocks). Arguments as :class:`WideResNet`."""
    return WideResNet(34, 10, num_classes, dropout, in_channels, activation, average_last_k)


def wrn_28_10(num_classes: int = 10, dropout: float = 0.0, in_channels: int = 3,
              activation: Activation = "relu", average_last_k: int = 0) -> WideResNet:
    """WRN-28-10 (n = 4 blocks per stage), e.g. RobustBench's CIFAR WideResNet default.

    Arguments as :class:`WideResNet`.
    """
    return WideResNet(28, 10, num_classes, dropout, in_channels, activation, average_last_k)


def wrn_70_16(num_classes: int = 10, dropout: float = 0.0, in_channels: int = 3,
              activation: Activation = "relu", average_last_k: int = 0) -> WideResNet:
    """WRN-70-16 (n = 11 blocks per stage). Arguments as :class:`WideResNet`."""
    return WideResNet(70, 16, num_classes, dropout, in_channels, activation, average_last_k)
