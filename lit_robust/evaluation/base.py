"""The evaluator contract shared by every method's ``test`` and by plain Python use.

An evaluator is a :class:`torchmetrics.Metric`: its counters live on the model's device and
are summed (or concatenated) across DDP ranks by torchmetrics when :meth:`compute` runs.

- :meth:`update` sees every test batch in [0, 1] pixel space with the model already in eval
  mode and autograd enabled (attacks need gradients).
- :meth:`run_standalone` is called once per test epoch, before :meth:`compute`, for
  evaluators that read data of their own (e.g. CIFAR-10-C files); the default does nothing.
- :meth:`compute` returns ``{metric name: value}`` with accuracies as fractions in [0, 1].
- :meth:`figures` returns matplotlib figures for TensorBoard (optional).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import Metric


class Evaluator(Metric):
    """Base class of all evaluators.

    Args:
        name: prefix of the metric names this evaluator reports; subclasses choose a
            descriptive default.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, name: str | None = None) -> None:
        super().__init__()
        self._name = name

    @property
    def name(self) -> str:
        """Prefix of the reported metric names."""
        return self._name or self.default_name()

    def default_name(self) -> str:
        """Name used when none is given."""
        return type(self).__name__.lower()

    @abstractmethod
    def update(self, model: nn.Module, x: Tensor, y: Tensor) -> None:  # type: ignore[override]
        """Accumulate the evaluation of one batch."""

    @abstractmethod
    def compute(self) -> dict[str, float]:
        """Return ``{metric name: value}`` for everything seen since the last reset."""

    def run_standalone(self, model: nn.Module) -> None:
        """Evaluate on data the evaluator loads itself; called once per test epoch."""

    def figures(self) -> dict[str, Any]:
        """Matplotlib figures to log, keyed by tag; computed after :meth:`compute`."""
        return {}


def rank_and_world_size() -> tuple[int, int]:
    """This process's rank and the number of processes (``(0, 1)`` without DDP).

    Evaluators that pick test images by their global index assume Lightning's unshuffled
    ``DistributedSampler``: the k-th image this rank sees is test image ``rank + k·world_size``.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1
