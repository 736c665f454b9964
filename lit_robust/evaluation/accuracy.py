"""Clean (unperturbed) top-1 accuracy."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lit_robust.evaluation.base import Evaluator
from lit_robust.models.modes import eval_mode


class CleanAccuracy(Evaluator):
    """Top-1 accuracy on the unperturbed test images.

    Reports ``{"clean_acc": accuracy}`` (the key is the evaluator's ``name``) and keeps which
    test images were classified correctly (:mod:`~lit_robust.evaluation.per_image`).

    Args:
        name: metric name; ``"clean_acc"`` by default.
    """

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)
        self.add_state("correct", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.keep_per_image()

    def default_name(self) -> str:
        return "clean_acc"

    def per_image_names(self) -> list[str]:
        return [self.name]

    def update(self, model: nn.Module, x: Tensor, y: Tensor) -> None:  # type: ignore[override]
        x, y, index = self.real_images_indexed(x, y)
        if y.numel() == 0:
            return
        with eval_mode(model), torch.no_grad():
            correct = model(x).argmax(dim=1) == y
        self.correct += correct.sum()
        self.total += y.numel()
        self.record_per_image(index, correct.unsqueeze(1))

    def compute(self) -> dict[str, float]:
        return {self.name: accuracy(self.correct, self.total, self)}


def accuracy(correct: Tensor, total: Tensor, evaluator: Evaluator) -> float:
    """``correct / total`` as a float, with a clear error when no example was seen."""
    if int(total) == 0:
        raise RuntimeError(
            f"{type(evaluator).__name__} ({evaluator.name!r}) saw no test examples; call "
            f"update(model, x, y) on at least one batch before compute()"
        )
    return float(correct) / float(total)
