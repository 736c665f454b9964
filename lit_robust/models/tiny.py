"""A very small BatchNorm conv net for CPU tests and quick starts on 32×32 images."""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            bn=nn.BatchNorm2d(out_channels),
            relu=nn.ReLU(),
        )
    )


class TinyCNN(nn.Module):
    """Four conv-BN-ReLU layers (``width`` × 1, 2, 4, 8 channels), 2×2 max-pooling after each
    of the first three, global average pooling and a ``linear`` head.

    With the default ``width=16`` it has about 0.1 M parameters and trains on CIFAR-10 in
    seconds per thousand images on a CPU.

    Args:
        num_classes: outputs of the head.
        width: channels of the first layer; the others use 2×, 4× and 8× this.
        in_channels: input image channels.

    Raises:
        ValueError: for a non-positive ``num_classes``, ``width`` or ``in_channels``.
    """

    def __init__(self, num_classes: int = 10, width: int = 16, in_channels: int = 3) -> None:
        super().__init__()
        if min(num_classes, width, in_channels) < 1:
            raise ValueError(
                f"num_classes, width and in_channels must be >= 1, got {num_classes}, {width}, "
                f"{in_channels}"
            )
        channels = [in_channels, width, 2 * width, 4 * width, 8 * width]
        self.layer1 = _conv_bn_relu(channels[0], channels[1])
        self.layer2 = _conv_bn_relu(channels[1], channels[2])
        self.layer3 = _conv_bn_relu(channels[2], channels[3])
        self.layer4 = _conv_bn_relu(channels[3], channels[4])
        self.pool = nn.MaxPool2d(2)
        self.num_features = channels[4]
        self.linear = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """Globally average-pooled last layer, shape (N, ``num_features``)."""
        out = self.pool(self.layer1(x))
        out = self.pool(self.layer2(out))
        out = self.pool(self.layer3(out))
        return self.layer4(out).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        """Logits of shape (N, num_classes)."""
        return self.linear(self.forward_features(x))
