"""Run evaluators over a test loader without Lightning.

``evaluate(model, loader, [CleanAccuracy(), PGDEvaluator(restarts=3)], device="cuda")`` does
what a method's ``test`` does: model in eval mode with autograd enabled, ``update`` on every
batch, ``run_standalone`` once, then every evaluator's ``compute`` merged into one flat
``{metric name: value}`` dict. Long evaluations (certification, AutoAttack, corruptions)
print progress lines with an ETA unless ``progress=False``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from lit_robust.evaluation.base import Evaluator, enable_progress, set_dataset_size
from lit_robust.models.modes import eval_mode


@contextmanager
def attack_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode with autograd enabled, for evaluators that compute input gradients.

    :class:`torchmetrics.Metric` runs ``update`` with gradients disabled, so an evaluator that
    attacks the model re-enables them here; every submodule's train/eval mode is restored
    afterwards.

    Raises:
        RuntimeError: inside ``torch.inference_mode``, where no gradients can be computed.
    """
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            "adversarial evaluation needs autograd, but it runs inside torch.inference_mode(); "
            "create the Trainer with inference_mode=False (lit-robust's default) or call "
            "lit_robust.evaluation.evaluate"
        )
    with eval_mode(model), torch.enable_grad():
        yield model


def merge_results(evaluators: Iterable[Evaluator]) -> dict[str, float]:
    """Call ``compute`` on every evaluator and merge the results into one dict.

    Raises:
        ValueError: when two evaluators report the same metric name (give one a ``name``).
    """
    merged: dict[str, float] = {}
    owner: dict[str, str] = {}
    for evaluator in evaluators:
        for key, value in evaluator.compute().items():
            if key in merged:
                raise ValueError(
                    f"{type(evaluator).__name__} and {owner[key]} both report {key!r}; give one "
                    f"of them a distinct name=... argument"
                )
            merged[key] = float(value)
            owner[key] = type(evaluator).__name__
    return merged


def _split_batch(batch: Sequence[Tensor] | Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
    if isinstance(batch, Mapping):
        return batch["image"], batch["label"]
    if isinstance(batch, Sequence) and len(batch) >= 2:
        return batch[0], batch[1]
    raise TypeError(
        f"expected batches of (images, labels) or {{'image', 'label'}} dicts, got {type(batch)}"
    )


def evaluate(
    model: nn.Module,
    loader: Iterable,
    evaluators: Sequence[Evaluator],
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, float]:
    """Evaluate ``model`` on every batch of ``loader`` with each evaluator.

    The model is moved to ``device`` and kept in eval mode (its previous modes are restored
    afterwards); the evaluators are reset first, so a repeated call starts from zero. When
    ``loader`` has a ``dataset`` with a length, the evaluators learn the test-set size and,
    under DDP, skip the copies a ``DistributedSampler`` pads the last shard with.

    Args:
        model: classifier over [0, 1] pixel-space images (normalization inside).
        loader: yields ``(images, labels)`` (or ``{"image", "label"}``) batches with images
            in [0, 1].
        evaluators: the evaluations to run, e.g. ``[CleanAccuracy(), PGDEvaluator()]``.
        device: where the model, the batches and the evaluators' counters live.
        progress: let long evaluations print progress lines with an ETA (rank 0 only; see
            :mod:`lit_robust.progress`).

    Returns:
        All evaluators' metrics merged into one ``{name: value}`` dict.

    Raises:
        ValueError: for an empty ``evaluators`` list or duplicate metric names (checked
            before anything runs for evaluators of one type with the same name).
    """
    if len(evaluators) == 0:
        raise ValueError("evaluate() needs at least one evaluator, e.g. [CleanAccuracy()]")
    labels = [(type(evaluator).__name__, evaluator.name) for evaluator in evaluators]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(
            f"evaluators {repeated} appear more than once with the same name and would report "
            "the same metrics; give each a distinct name=... argument"
        )
    device = torch.device(device)
    model.to(device)
    for evaluator in evaluators:
        evaluator.reset()
        evaluator.to(device)
    set_dataset_size(evaluators, loader)
    enable_progress(evaluators, progress)
    with attack_mode(model):
        for batch in loader:
            x, y = _split_batch(batch)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            for evaluator in evaluators:
                evaluator.update(model, x, y)
        for evaluator in evaluators:
            evaluator.run_standalone(model)
    return merge_results(evaluators)
