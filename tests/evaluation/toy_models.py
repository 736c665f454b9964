"""Small models with known behaviour, shared by the evaluation tests."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ConstantClassifier(nn.Module):
    """Always predicts ``label`` whatever the input."""

    def __init__(self, num_classes: int, label: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.label = label

    def forward(self, x: Tensor) -> Tensor:
        logits = torch.zeros(x.shape[0], self.num_classes)
        logits[:, self.label] = 1.0
        return logits


def self_labelled_batch(n: int = 48) -> tuple[nn.Sequential, Tensor, Tensor]:
    """A random small conv net and images labelled with its own predictions (clean acc. 1)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
        nn.Linear(8 * 15 * 15, 10),
    ).eval()
    x = torch.rand(n, 3, 32, 32)
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    return model, x, y


class PhaseClassifier(nn.Module):
    """Predicts ``first`` for its first ``switch`` inputs, then ``then`` (3 classes): the
    selection and estimation draws of CERTIFY then see different classes."""

    def __init__(self, switch: int, first: int, then: int) -> None:
        super().__init__()
        self.switch, self.first, self.then = switch, first, then
        self.seen = 0

    def forward(self, x: Tensor) -> Tensor:
        index = torch.arange(self.seen, self.seen + x.shape[0])
        self.seen += x.shape[0]
        labels = torch.where(index < self.switch, self.first, self.then)
        return torch.nn.functional.one_hot(labels, 3).float()
