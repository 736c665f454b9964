"""Normalization as the first module of every model, so images stay in [0, 1] outside it."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lit_robust.models.heads import find_head


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` with the statistics stored as buffers.

    The buffers have shape ``(1, C, 1, 1)`` and travel with the model's ``state_dict``, device
    and dtype. A single value applies to every channel.

    Args:
        mean: per-channel means in [0, 1] pixel units (one value per channel, or one value).
        std: per-channel standard deviations (positive), same length as ``mean``.

    Raises:
        ValueError: when the lengths differ, a sequence is empty or a std is not positive.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std_t = torch.as_tensor(std, dtype=torch.float32).flatten()
        if mean_t.numel() == 0 or mean_t.numel() != std_t.numel():
            raise ValueError(
                f"mean and std need the same non-zero number of channels, got {len(mean_t)} "
                f"means and {len(std_t)} stds"
            )
        if bool((std_t <= 0).any()):
            raise ValueError(f"every std must be positive, got {std_t.tolist()}")
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1))
        self.register_buffer("std", std_t.view(1, -1, 1, 1))

    @property
    def num_channels(self) -> int:
        """Number of channels the statistics describe (1 means 'any')."""
        return self.mean.shape[1]

    def forward(self, x: Tensor) -> Tensor:
        """Normalize an image batch of shape (N, C, H, W) in [0, 1] pixel space."""
        if x.dim() != 4:
            raise ValueError(f"expected an image batch of shape (N, C, H, W), got {tuple(x.shape)}")
        if self.num_channels != 1 and x.shape[1] != self.num_channels:
            raise ValueError(
                f"Normalize holds statistics for {self.num_channels} channels but the input has "
                f"{x.shape[1]}; pass one mean/std value per input channel"
            )
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class NormalizedClassifier(nn.Module):
    """A backbone preceded by its input normalization: ``net(normalize(x))``.

    Attacks, smoothing noise and every ε see the pixel-space input of this module, so nothing
    is normalized twice.

    Args:
        net: the backbone returning logits.
        mean: per-channel means of the backbone's training data (``(0,)`` with ``std=(1,)``
            for a backbone trained on raw [0, 1] images).
        std: per-channel standard deviations.
    """

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        """Logits for pixel-space images ``x`` in [0, 1]."""
        return self.net(self.normalize(x))

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features (the classifier head's input), shape (N, D).

        Uses the backbone's ``forward_features`` (the backbones of this package), timm's
        ``forward_head(..., pre_logits=True)``, or otherwise captures the input of the head
        found by :func:`lit_robust.models.heads.find_head`.
        """
        h = self.normalize(x)
        if hasattr(self.net, "forward_head"):  # timm: forward_features returns feature maps
            return self.net.forward_head(self.net.forward_features(h), pre_logits=True)
        if hasattr(self.net, "forward_features"):
            return self.net.forward_features(h)
        return _head_input(self.net, h)


def _head_input(net: nn.Module, x: Tensor) -> Tensor:
    _, head = find_head(net)
    captured: list[Tensor] = []

    def keep_input(_module: nn.Module, args: tuple[Tensor, ...]) -> None:
        captured.append(args[0])

    handle = head.register_forward_pre_hook(keep_input)
    try:
        net(x)
    finally:
        handle.remove()
    return captured[0]
