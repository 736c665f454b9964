"""The evaluator contract shared by every method's ``test`` and by plain Python use.

An evaluator is a :class:`torchmetrics.Metric`: its counters live on the model's device and
are summed (or concatenated) across DDP ranks by torchmetrics when :meth:`compute` runs.

- :meth:`update` sees every test batch in [0, 1] pixel space with the model already in eval
  mode and autograd enabled (attacks need gradients).
- :meth:`run_standalone` is called once per test epoch, before :meth:`compute`, for
  evaluators that read data of their own (e.g. CIFAR-10-C files); the default does nothing.
- :meth:`compute` returns ``{metric name: value}`` with accuracies as fractions in [0, 1].
- :meth:`figures` returns matplotlib figures for TensorBoard (optional).

Each test image counts exactly once, also under DDP. Lightning shards the test set with an
unshuffled ``DistributedSampler``, which deals the indices round-robin (the k-th image of rank
r is test image r + k·W for W processes) and pads the last round with copies of the first
images so that every rank gets as many. An evaluator numbers the images it sees with
:meth:`Evaluator.global_index` and, once it knows the test-set size
(:meth:`Evaluator.set_dataset_size`; a method's ``test`` and
:func:`~lit_robust.evaluation.runner.evaluate` set it from the test loader),
:meth:`Evaluator.real_images` drops the padding copies, whose index is at least the size.

Evaluators whose work on one batch (or in :meth:`Evaluator.run_standalone`) is long print
progress lines with an ETA (:mod:`lit_robust.progress`) when :func:`enable_progress` turned
them on: a method's ``test`` does so when its trainer shows a progress bar, ``evaluate`` by
default.
"""

from __future__ import annotations

import warnings
from abc import abstractmethod
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import Metric

from lit_robust.evaluation.per_image import PerImageResult
from lit_robust.progress import Progress


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
        self.dataset_size: int | None = None
        self._seen = 0
        self._warned_unknown_size = False
        self.progress_enabled = False
        self._progress: Progress | None = None

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

    def reset(self) -> None:
        """Clear the metric states and restart the global image numbering."""
        super().reset()
        self._seen = 0
        self._progress = None

    def progress(self, total: int | None, unit: str) -> Progress:
        """This test epoch's progress counter, named after the evaluator.

        Created by the first call after :meth:`reset` (later calls return it whatever their
        arguments); it prints only when :attr:`progress_enabled` is set.
        """
        if self._progress is None:
            self._progress = Progress(self.name, total, unit, enabled=self.progress_enabled)
        return self._progress

    def images_on_this_rank(self, limit: int | None = None) -> int | None:
        """How many real test images this process sees, counting only global indices below
        ``limit``; ``None`` while the test-set size is unknown."""
        if self.dataset_size is None:
            return None
        rank, world_size = rank_and_world_size()
        size = self.dataset_size if limit is None else min(self.dataset_size, limit)
        return len(range(rank, size, world_size))

    def set_dataset_size(self, size: int | None) -> None:
        """The number of images of the whole test set (``None``: unknown).

        Under DDP, images this process sees at a global index ≥ ``size`` are copies that the
        distributed sampler added as padding; :meth:`real_images` drops them.

        Raises:
            ValueError: for a negative size.
        """
        if size is not None and size < 0:
            raise ValueError(f"the test-set size must be >= 0, got {size}")
        self.dataset_size = size

    def global_index(self, count: int) -> Tensor:
        """Test-set indices of the next ``count`` images this process sees.

        Advances the numbering: call it once per batch. Rank r of W processes sees test image
        r + k·W as its k-th image (unshuffled ``DistributedSampler``); one process sees k.
        """
        rank, world_size = rank_and_world_size()
        position = torch.arange(self._seen, self._seen + count)
        self._seen += count
        return rank + position * world_size

    def is_real(self, index: Tensor) -> Tensor:
        """Boolean mask of the indices that are test images, not the sampler's padding."""
        if self.dataset_size is None:
            if rank_and_world_size()[1] > 1 and not self._warned_unknown_size:
                self._warned_unknown_size = True
                warnings.warn(
                    f"{type(self).__name__} runs under DDP without the test-set size, so the "
                    "images the distributed sampler repeats to pad the last shard count twice; "
                    "call set_dataset_size(len(test_dataset)) before evaluating",
                    stacklevel=3,
                )
            return torch.ones_like(index, dtype=torch.bool)
        return index < self.dataset_size

    def real_images(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Number this batch (:meth:`global_index`) and drop the sampler's padding copies."""
        x, y, _ = self.real_images_indexed(x, y)
        return x, y

    def keep_per_image(self) -> None:
        """Register the states that keep per-image results.

        See :mod:`~lit_robust.evaluation.per_image`; evaluators that record them call this in
        ``__init__``.

        The states are concatenated across DDP ranks, like the images they describe.
        """
        self.add_state("image_index", default=[], dist_reduce_fx="cat")
        self.add_state("image_values", default=[], dist_reduce_fx="cat")

    def per_image_names(self) -> list[str]:
        """The metric of each column passed to :meth:`record_per_image` (none by default)."""
        return []

    def per_image_maximum(self) -> int:
        """The per-image count of a fully correct image (1: one prediction per image)."""
        return 1

    def record_per_image(self, index: Tensor, values: Tensor) -> None:
        """Keep this batch's per-image results.

        Args:
            index: test-set positions of the batch's real images (:meth:`real_images_indexed`).
            values: shape ``(images, len(per_image_names()))``: 1/0 for correct or not, or a
                count of correct predictions up to :meth:`per_image_maximum`.
        """
        self.image_index.append(index.to(self.device, torch.long))
        self.image_values.append(values.to(self.device, torch.long).flatten())

    def per_image(self) -> dict[str, PerImageResult]:
        """Every recorded metric's per-image results, gathered from all DDP ranks and sorted
        by test-set position (a collective call under DDP: every rank must make it)."""
        names = self.per_image_names()
        if not names or not hasattr(self, "image_index"):
            return {}
        with self.sync_context(should_unsync=True):
            index, values = _concatenated(self.image_index), _concatenated(self.image_values)
        order = torch.argsort(index)
        index = index[order].cpu().numpy()
        values = values.reshape(-1, len(names))[order].cpu().numpy()
        return {name: PerImageResult(index, values[:, column], self.per_image_maximum())
                for column, name in enumerate(names)}

    def real_images_indexed(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`real_images` that also returns the kept images' test-set positions."""
        index = self.global_index(y.shape[0])
        keep = self.is_real(index)
        if bool(keep.all()):
            return x, y, index
        return x[keep.to(x.device)], y[keep.to(y.device)], index[keep]

    def run_standalone(self, model: nn.Module) -> None:
        """Evaluate on data the evaluator loads itself; called once per test epoch."""

    def figures(self) -> dict[str, Any]:
        """Matplotlib figures to log, keyed by tag; computed after :meth:`compute`."""
        return {}


def enable_progress(evaluators: Iterable[Evaluator], enabled: bool) -> None:
    """Turn the progress lines of long evaluations on or off (see :mod:`lit_robust.progress`).

    A method's ``test`` passes ``trainer_shows_progress(trainer)``: off with
    ``trainer.enable_progress_bar: false`` and on every rank but 0.
    """
    for evaluator in evaluators:
        evaluator.progress_enabled = enabled


def _concatenated(state: list[Tensor] | Tensor) -> Tensor:
    """A list state (one rank, not synchronized) or its synchronized tensor, as ``int64``."""
    if isinstance(state, Tensor):
        return state.long().flatten()
    if not state:
        return torch.zeros(0, dtype=torch.long)
    return torch.cat(state).long()


def rank_and_world_size() -> tuple[int, int]:
    """This process's rank and the number of processes (``(0, 1)`` without DDP).

    Evaluators that pick test images by their global index assume Lightning's unshuffled
    ``DistributedSampler``: the k-th image this rank sees is test image ``rank + k·world_size``.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def dataset_size_of(loaders: Any) -> int | None:
    """The number of images of a test loader's dataset, or ``None`` when it has no length.

    Args:
        loaders: a ``DataLoader``, or a sequence holding exactly one (Lightning's
            ``trainer.test_dataloaders``); anything else gives ``None``.
    """
    if isinstance(loaders, (list, tuple)):
        if len(loaders) != 1:
            return None
        loaders = loaders[0]
    dataset = getattr(loaders, "dataset", None)
    try:
        return len(dataset)  # type: ignore[arg-type]
    except TypeError:
        return None


def set_dataset_size(evaluators: Iterable[Evaluator], loaders: Any) -> None:
    """Tell every evaluator the size of the test set behind ``loaders``, when it has one."""
    size = dataset_size_of(loaders)
    if size is None:
        return
    for evaluator in evaluators:
        evaluator.set_dataset_size(size)
