"""Accuracy under the 15 common corruptions × 5 severities (CIFAR-10-C style).

Hendrycks & Dietterich, ICLR 2019; reported by RiFT (Zhu et al., ICCV 2023) as the mean
accuracy over all corruptions and severities. Two sources of corrupted images:

- ``"generate"``: every test batch that :meth:`CorruptionRobustness.update` sees is corrupted
  on the fly (:func:`lit_robust.evaluation.corruptions.corrupt`), so it works for any dataset
  and resolution;
- ``"files"``: the published CIFAR-10-C / CIFAR-100-C / Tiny-ImageNet-C images are read in
  :meth:`CorruptionRobustness.run_standalone`, each DDP process taking every W-th image.

``max_images`` keeps the first ``max_images`` test images (per corruption and severity). Under
DDP the k-th image of rank r is test image r + k·W (``DistributedSampler`` without
shuffling), so the same images are used as in a single process. Counts are summed over ranks.

With progress lines on (:func:`~lit_robust.evaluation.base.enable_progress`), rank 0 prints
``<name>: i/N corruption × severity passes, elapsed, ETA``: one pass per corruption and
severity over each test batch (``"generate"``) or over the whole file share (``"files"``), see
:mod:`lit_robust.progress`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_robust.evaluation.base import Evaluator, rank_and_world_size
from lit_robust.evaluation.corruptions.files import CorruptionDataset, open_corrupted
from lit_robust.evaluation.corruptions.generate import CORRUPTIONS, SEVERITIES, corrupt
from lit_robust.models.modes import eval_mode

_UNIT = "corruption × severity passes"


class CorruptionRobustness(Evaluator):
    """Accuracy under common corruptions.

    Metrics (prefixed with ``name/``): ``mean`` (mean accuracy over all corruptions and
    severities), one per corruption (mean over severities) and ``severity_<s>`` (mean over
    corruptions).

    Args:
        corruptions: corruption names (default: all 15).
        severities: severities to evaluate, from 1 to 5.
        source: ``"generate"`` (corrupt the test batches) or ``"files"`` (read the published
            benchmark files).
        root: ``"files"`` only: folder holding ``CIFAR-10-C/``, ``CIFAR-100-C/`` or
            ``Tiny-ImageNet-C/`` (default ``$LIT_ROBUST_DATA``, else ``./data``).
        dataset: ``"files"`` only: which benchmark to read.
        max_images: evaluate the first ``max_images`` test images (all if ``None``).
        batch_size: ``"files"`` only: images per forward pass.
        seed: ``"generate"`` only: base seed of the corruption noise.
        preset: ``"generate"`` only: severity parameters (``"auto"`` picks them from the
            image size; see :mod:`lit_robust.evaluation.corruptions.params`).
        class_names: Tiny-ImageNet-C only: wnids in the model's class order (default sorted).
        resize: ``"files"`` only: resize the benchmark images to this side (e.g. 224 for a
            model fine-tuned on upsampled CIFAR), bilinear with antialiasing.
        name: metric-name prefix; default ``corruption_acc``.

    Raises:
        ValueError: for unknown corruptions, severities outside 1–5, ``"files"`` without
            ``dataset``, or non-positive sizes.
    """

    def __init__(
        self,
        corruptions: Sequence[str] | None = None,
        severities: Sequence[int] = SEVERITIES,
        source: Literal["generate", "files"] = "generate",
        root: str | None = None,
        dataset: CorruptionDataset | None = None,
        max_images: int | None = None,
        batch_size: int = 256,
        seed: int = 0,
        preset: Literal["auto", "cifar", "tinyimagenet", "imagenet"] = "auto",
        class_names: Sequence[str] | None = None,
        resize: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.corruptions = list(corruptions) if corruptions is not None else list(CORRUPTIONS)
        self.severities = list(severities)
        unknown = [c for c in self.corruptions if c not in CORRUPTIONS]
        if unknown or not self.corruptions:
            raise ValueError(f"unknown corruptions {unknown}; choose from {list(CORRUPTIONS)}")
        if not self.severities or any(s not in SEVERITIES for s in self.severities):
            raise ValueError(f"severities must be a non-empty subset of 1-5, got {severities}")
        if source not in ("generate", "files"):
            raise ValueError(f"source must be 'generate' or 'files', got {source!r}")
        if source == "files" and dataset is None:
            raise ValueError("source='files' needs dataset: cifar10, cifar100 or tinyimagenet")
        for key, value in {"max_images": max_images, "batch_size": batch_size,
                           "resize": resize}.items():
            if value is not None and value < 1:
                raise ValueError(f"{key} must be >= 1, got {value}")
        self.source = source
        self.root = root
        self.dataset = dataset
        self.max_images = max_images
        self.batch_size = batch_size
        self.seed = seed
        self.preset = preset
        self.class_names = list(class_names) if class_names is not None else None
        self.resize = resize
        self._batches = 0
        self._accuracy: np.ndarray | None = None
        shape = (len(self.corruptions), len(self.severities))
        self.add_state("correct", default=torch.zeros(shape, dtype=torch.long),
                       dist_reduce_fx="sum")
        self.add_state("total", default=torch.zeros(shape, dtype=torch.long),
                       dist_reduce_fx="sum")
        self.keep_per_image()

    def default_name(self) -> str:
        return "corruption_acc"

    def per_image_names(self) -> list[str]:
        """Generated corruptions keep, per test image, how many of the corruption × severity
        conditions it was classified correctly under (``<name>/mean`` image by image)."""
        return [f"{self.name}/mean"] if self.source == "generate" else []

    def per_image_maximum(self) -> int:
        return self._passes()

    def reset(self) -> None:
        """Clear the counts and restart the image numbering and the noise streams."""
        super().reset()
        self._batches = 0
        self._accuracy = None

    def update(self, model: nn.Module, x: Tensor, y: Tensor) -> None:  # type: ignore[override]
        """``"generate"``: corrupt this batch every way and count correct predictions."""
        if self.source != "generate":
            return
        rank = rank_and_world_size()[0]
        images = self.images_on_this_rank(self.max_images)
        batches = None if images is None else math.ceil(images / max(x.shape[0], 1))
        progress = self.progress(None if batches is None else batches * self._passes(),
                                 _UNIT)
        index = self.global_index(x.shape[0])
        keep = self.is_real(index)
        if self.max_images is not None:
            keep &= index < self.max_images
        if not bool(keep.any()):
            return
        if not bool(keep.all()):
            x, y = x[keep.to(x.device)], y[keep.to(y.device)]
        self._batches += 1
        correct_count = torch.zeros_like(y)
        with torch.no_grad(), eval_mode(model):
            for i, corruption in enumerate(self.corruptions):
                for j, severity in enumerate(self.severities):
                    generator = torch.Generator(device=x.device)
                    generator.manual_seed(_seed(self.seed, i, severity, rank, self._batches))
                    corrupted = corrupt(x, corruption, severity, generator, self.preset)
                    correct_count += self._count(model(corrupted), y, i, j)
                    progress.advance(detail=f"{corruption} {severity}")
        self.record_per_image(index[keep], correct_count.unsqueeze(1))

    def run_standalone(self, model: nn.Module) -> None:
        """``"files"``: evaluate this process's share of the published benchmark images."""
        if self.source != "files":
            return
        rank, world_size = rank_and_world_size()
        device = next(model.parameters(), torch.empty(0, device=self.device)).device
        progress = self.progress(self._passes(), _UNIT)
        with torch.no_grad(), eval_mode(model):
            for i, corruption in enumerate(self.corruptions):
                for j, severity in enumerate(self.severities):
                    images = open_corrupted(self.dataset, corruption, severity, self.root,
                                            self.class_names)
                    count = len(images) if self.max_images is None else min(len(images),
                                                                            self.max_images)
                    mine = list(range(rank, count, world_size))
                    for start in range(0, len(mine), self.batch_size):
                        positions = mine[start:start + self.batch_size]
                        x = images.images(positions).to(device).float().div_(255)
                        if self.resize is not None:
                            x = F.interpolate(x, size=(self.resize, self.resize),
                                              mode="bilinear", antialias=True).clamp_(0, 1)
                        self._count(model(x), images.labels[positions].to(device), i, j)
                    progress.advance(detail=f"{corruption} {severity}")
        # run_standalone is not a torchmetrics update: drop any cached result and record
        # that states changed, so compute() neither returns stale values nor warns.
        self._computed = None
        self._update_count += 1

    def compute(self) -> dict[str, float]:
        """Mean accuracy overall, per corruption and per severity."""
        if bool((self.total == 0).any()):
            raise RuntimeError(
                f"{type(self).__name__} has no images for some corruption/severity: call "
                "update (source='generate') or run_standalone (source='files') first"
            )
        accuracy = (self.correct.double() / self.total.double()).cpu().numpy()
        self._accuracy = accuracy
        prefix = self.name
        metrics = {f"{prefix}/mean": float(accuracy.mean())}
        for i, corruption in enumerate(self.corruptions):
            metrics[f"{prefix}/{corruption}"] = float(accuracy[i].mean())
        for j, severity in enumerate(self.severities):
            metrics[f"{prefix}/severity_{severity}"] = float(accuracy[:, j].mean())
        return metrics

    def figures(self) -> dict[str, Any]:
        """Bar chart of the accuracy per corruption (needs :meth:`compute` first)."""
        if self._accuracy is None:
            return {}
        from matplotlib.figure import Figure  # no pyplot: rendered by any (Agg) canvas

        per_corruption = self._accuracy.mean(axis=1)
        figure = Figure(figsize=(max(4.0, 0.45 * len(self.corruptions) + 1.5), 3.5))
        axes = figure.add_subplot()
        axes.bar(range(len(self.corruptions)), per_corruption, color="tab:blue")
        axes.axhline(float(self._accuracy.mean()), color="tab:red", linestyle="--",
                     label=f"mean {self._accuracy.mean():.3f}")
        axes.set_xticks(range(len(self.corruptions)))
        axes.set_xticklabels([c.replace("_", " ") for c in self.corruptions], rotation=60,
                             ha="right", fontsize=8)
        axes.set_ylabel("accuracy")
        axes.set_ylim(0.0, 1.0)
        axes.set_title(f"severities {', '.join(map(str, self.severities))} ({self.source})")
        axes.legend()
        figure.tight_layout()
        return {f"{self.name}/accuracy_per_corruption": figure}

    def _passes(self) -> int:
        return len(self.corruptions) * len(self.severities)

    def _count(self, logits: Tensor, y: Tensor, i: int, j: int) -> Tensor:
        """Count one condition's correct predictions; returns them image by image."""
        correct = logits.argmax(dim=1) == y
        self.correct[i, j] += correct.sum()
        self.total[i, j] += y.numel()
        return correct.long()


def _seed(seed: int, corruption: int, severity: int, rank: int, batch: int) -> int:
    state = np.random.SeedSequence([seed, corruption, severity, rank, batch]).generate_state(
        2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])
