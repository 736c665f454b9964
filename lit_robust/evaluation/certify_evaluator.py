"""Certified accuracy of the Gaussian-smoothed model on an evenly spaced test subset.

Protocol of Cohen, Rosenfeld and Kolter (ICML 2019), also used by Jeong & Shin (consistency
regularization, NeurIPS 2020) and the transfer-learning robustness study: CERTIFY every
``stride``-th test image (500 of CIFAR-10's 10,000 with stride 20), with n0 = 100, n = 100,000,
α = 0.001, and report certified accuracy at L2 radii and the average certified radius (ACR).

Which images are certified. The evaluator sees the test batches in loader order through
``update``. It numbers the images by their position in the test set (the global index) and
certifies those whose index is a multiple of the stride:

- the stride is ``skip`` when given (the transfer study lists one per dataset): every
  ``skip``-th image of the whole test split, indices 0, skip, 2·skip, ... below its size;
- otherwise it is ⌈size / ``max_images``⌉ for the real test-set size (taken from the test
  loader, :meth:`~lit_robust.evaluation.base.Evaluator.set_dataset_size`), so that at most
  ``max_images`` images are spread evenly over the *whole* split, its last classes included
  (class-sorted splits such as DTD's would otherwise lose their tail);
- a subset is never a prefix: ``skip`` together with a ``max_images`` below the number of
  images it selects is refused, and so is a ``num_test_images`` that contradicts the test
  loader's size;
- under DDP the test loader is sharded by ``DistributedSampler`` without shuffling, which deals
  the indices round-robin: rank r sees r, r + W, r + 2W, ... for W processes. The k-th image
  of rank r therefore has global index r + k·W, so every process selects its part of exactly
  the subset a single process would certify. The sampler pads the last round with copies of
  the first images, at positions ≥ the test-set size; they are never certified.

Every certified image leaves a record (index, label, prediction, radius, seconds) in
concatenated metric states that torchmetrics gathers from all ranks in :meth:`compute`. Its
noise comes from a generator seeded by ``(seed, global index)``, so the result does not depend
on batch size, number of processes or the order of evaluation.

With progress lines on (:func:`~lit_robust.evaluation.base.enable_progress`), rank 0 prints
``<name>: i/N images, elapsed, ETA`` as it certifies its N images (:mod:`lit_robust.progress`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics.utilities import dim_zero_cat

from lit_robust.evaluation.base import Evaluator, rank_and_world_size
from lit_robust.evaluation.certification_stats import smallest_certifying_n
from lit_robust.evaluation.per_image import PerImageResult
from lit_robust.evaluation.smoothing import ABSTAIN, SmoothedClassifier

_RECORDS = ("cert_index", "cert_label", "cert_prediction", "cert_radius", "cert_seconds")


class SmoothingCertification(Evaluator):
    """CERTIFY an evenly spaced subset of the test set with randomized smoothing.

    Metrics (prefixed with ``name/``): ``certified_acc@<r>`` for every radius r (fraction of
    certified images whose prediction is correct with radius ≥ r; abstentions count as
    wrong), ``acr`` (mean certified radius of correct predictions over all certified images,
    0 for abstained or wrong ones), ``abstain_rate``, ``seconds_per_image`` and ``num_images``.

    Args:
        sigma: noise standard deviation in [0, 1] pixel units.
        n0: selection samples per image.
        n: estimation samples per image.
        alpha: failure probability per image.
        batch_size: noisy samples per forward pass.
        max_images: with ``skip`` unset, certify this many images at most, spread over the
            whole test set (stride ⌈size / max_images⌉); ``None`` certifies every image.
            With ``skip`` it must not cut the selection short (``None`` never does).
        skip: certify every ``skip``-th test image (index 0, skip, 2·skip, ...) of the whole
            split.
        num_test_images: the expected size of the test set, only for evaluation outside a
            trainer that never reports it (:meth:`set_dataset_size`); a size that
            contradicts the test loader's is an error. Leave it unset otherwise.
        radii: radii at which certified accuracy is reported.
        num_classes: classes of the model; inferred from its logits when ``None``.
        seed: base seed of the per-image noise generators.
        bf16: run the model under bfloat16 autocast while sampling (GPUs).
        name: metric-name prefix; default ``smoothing_sigma<sigma>``.

    Raises:
        ValueError: for non-positive counts, ``alpha`` outside (0, 1), an ``n`` too small to
            certify anything at that ``alpha`` (the message names the smallest that can), or
            negative radii.
    """

    def __init__(
        self,
        sigma: float = 0.25,
        n0: int = 100,
        n: int = 100_000,
        alpha: float = 0.001,
        batch_size: int = 1000,
        max_images: int | None = 500,
        skip: int | None = None,
        num_test_images: int | None = None,
        radii: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
        num_classes: int | None = None,
        seed: int = 0,
        bf16: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0 (pixel units, e.g. 0.25), got {sigma}")
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
        for key, value in {"n0": n0, "n": n, "batch_size": batch_size, "max_images": max_images,
                           "skip": skip, "num_test_images": num_test_images}.items():
            if value is not None and value < 1:
                raise ValueError(f"{key} must be >= 1, got {value}")
        n_min = smallest_certifying_n(alpha)
        if n < n_min:
            raise ValueError(
                f"n={n} CERTIFY samples cannot certify anything at alpha={alpha}: even {n} "
                f"votes out of {n} give a lower bound alpha**(1/n) = {alpha ** (1 / n):.3f} "
                f"<= 0.5, so every image would abstain; use n >= {n_min}"
            )
        if any(r < 0 for r in radii):
            raise ValueError(f"radii must be >= 0, got {list(radii)}")
        self.sigma = sigma
        self.n0 = n0
        self.n = n
        self.alpha = alpha
        self.batch_size = batch_size
        self.max_images = max_images
        self.num_test_images = num_test_images
        self.skip = skip
        self.radii = sorted(float(r) for r in radii)
        self.num_classes = num_classes
        self.seed = seed
        self.bf16 = bf16
        self._records: dict[str, np.ndarray] | None = None
        for record in _RECORDS:
            self.add_state(record, default=[], dist_reduce_fx="cat")

    def default_name(self) -> str:
        return f"smoothing_sigma{self.sigma:g}"

    def reset(self) -> None:
        """Clear the records and restart the global image numbering."""
        super().reset()
        self._records = None

    @property
    def test_set_size(self) -> int | None:
        """The size of the whole test set: the test loader's, else ``num_test_images``."""
        return self.dataset_size if self.dataset_size is not None else self.num_test_images

    @property
    def stride(self) -> int:
        """Index spacing of the certified images: ``skip``, or size / ``max_images`` rounded up.

        Raises:
            ValueError: without ``skip`` while the test-set size is unknown.
        """
        if self.skip is not None:
            return self.skip
        size = self.test_set_size
        if size is None:
            raise ValueError(
                "SmoothingCertification without skip spreads max_images images over the whole "
                "test set and needs its size: evaluate through a method's test or "
                "lit_robust.evaluation.evaluate (they report it), call "
                "set_dataset_size(len(test_set)), or pass skip"
            )
        if self.max_images is None:
            return 1
        return max(1, -(-size // self.max_images))

    def set_dataset_size(self, size: int | None) -> None:
        """Record the test-set size and check that the certified subset spans all of it.

        Raises:
            ValueError: when ``num_test_images`` contradicts ``size``, or ``skip`` selects more
                images than ``max_images`` lets through (the rest would be a tail never
                certified).
        """
        super().set_dataset_size(size)
        if size is None:
            return
        if self.num_test_images is not None and self.num_test_images != size:
            raise ValueError(
                f"SmoothingCertification(num_test_images={self.num_test_images}) contradicts the "
                f"test set, which has {size} images; drop num_test_images (the size is taken "
                "from the test loader)"
            )
        if self.skip is not None and self.max_images is not None:
            chosen = -(-size // self.skip)
            if chosen > self.max_images:
                raise ValueError(
                    f"SmoothingCertification(skip={self.skip}) selects {chosen} of the {size} test "
                    f"images but max_images={self.max_images} would certify only those below "
                    f"index {self.skip * self.max_images}, never the rest of the split; set "
                    f"max_images: null, or skip >= {-(-size // self.max_images)}"
                )

    def selected(self, index: Tensor) -> Tensor:
        """Boolean mask of the global test-set indices this evaluator certifies."""
        return self._in_subset(index) & self.is_real(index)

    def _in_subset(self, index: Tensor) -> Tensor:
        stride = self.stride
        keep = index % stride == 0
        if self.max_images is not None:
            keep &= index // stride < self.max_images
        size = self.test_set_size
        if size is not None:
            keep &= index < size
        return keep

    def images_to_certify(self) -> int | None:
        """How many images this process certifies in a test epoch (``None``: unknown until
        the test-set size is known)."""
        size = self.test_set_size
        if size is None:
            return None
        rank, world_size = rank_and_world_size()
        return int(self._in_subset(torch.arange(rank, size, world_size)).sum())

    def update(self, model: nn.Module, x: Tensor, y: Tensor) -> None:  # type: ignore[override]
        """Certify the images of this batch that belong to the evenly spaced subset."""
        index = self.global_index(x.shape[0])
        chosen = torch.nonzero(self.selected(index)).flatten().tolist()
        records: dict[str, list[float]] = {key: [] for key in _RECORDS}
        if chosen:
            progress = self.progress(self.images_to_certify(), "images")
            smoothed = SmoothedClassifier(model, self._infer_num_classes(model, x), self.sigma,
                                          bf16=self.bf16)
            labels = y[chosen].tolist()
            for row, label in zip(chosen, labels, strict=True):
                global_index = int(index[row])
                generator = torch.Generator(device=x.device)
                generator.manual_seed(_image_seed(self.seed, global_index))
                start = time.perf_counter()
                prediction, radius = smoothed.certify(x[row], self.n0, self.n, self.alpha,
                                                      self.batch_size, generator)
                seconds = time.perf_counter() - start
                progress.advance()
                for key, value in zip(_RECORDS, (global_index, label, prediction, radius,
                                                 seconds), strict=True):
                    records[key].append(value)
        for key in _RECORDS:
            dtype = torch.float64 if key in ("cert_radius", "cert_seconds") else torch.long
            getattr(self, key).append(torch.tensor(records[key], dtype=dtype, device=self.device))

    def compute(self) -> dict[str, float]:
        """Certified accuracies, ACR, abstention rate, seconds per image and image count."""
        records = self._gathered_records()
        self._records = records
        correct = (records["prediction"] == records["label"]) & (records["prediction"] != ABSTAIN)
        count = len(correct)
        prefix = self.name
        metrics = {
            f"{prefix}/certified_acc@{r:g}": _mean(correct & (records["radius"] >= r))
            for r in self.radii
        }
        metrics[f"{prefix}/acr"] = _mean(np.where(correct, records["radius"], 0.0))
        metrics[f"{prefix}/abstain_rate"] = _mean(records["prediction"] == ABSTAIN)
        metrics[f"{prefix}/seconds_per_image"] = _mean(records["seconds"])
        metrics[f"{prefix}/num_images"] = float(count)
        return metrics

    def per_image(self) -> dict[str, PerImageResult]:
        """For every radius r, each certified image's 1/0 of ``certified_acc@r`` (correct with
        a radius of at least r), keyed by test-set position, so that two runs certified on
        the same images are compared image by image (:mod:`~lit_robust.evaluation.per_image`).
        Uses the records :meth:`compute` gathered from every rank."""
        records = self._records
        if records is None:
            with self.sync_context(should_unsync=True):
                records = self._gathered_records()
        correct = (records["prediction"] == records["label"]) & (records["prediction"] != ABSTAIN)
        index = records["index"].astype(np.int64)
        return {f"{self.name}/certified_acc@{r:g}": PerImageResult(
            index, (correct & (records["radius"] >= r)).astype(np.int64)) for r in self.radii}

    def figures(self) -> dict[str, Any]:
        """Certified accuracy as a function of the L2 radius (needs :meth:`compute` first)."""
        if self._records is None:
            return {}
        from matplotlib.figure import Figure  # no pyplot: rendered by any (Agg) canvas

        records = self._records
        correct = (records["prediction"] == records["label"]) & (records["prediction"] != ABSTAIN)
        top = max(self.radii + [float(records["radius"].max(initial=0.0))]) * 1.05 + 1e-6
        grid = np.linspace(0.0, top, 200)
        curve = [_mean(correct & (records["radius"] >= r)) for r in grid]
        figure = Figure(figsize=(5, 3.5))
        axes = figure.add_subplot()
        axes.plot(grid, curve, label=f"σ = {self.sigma:g}")
        axes.scatter(self.radii, [_mean(correct & (records["radius"] >= r)) for r in self.radii],
                     s=12)
        axes.set_xlabel("L2 radius (pixel units)")
        axes.set_ylabel("certified accuracy")
        axes.set_ylim(0.0, 1.0)
        axes.set_title(f"{len(correct)} images, n = {self.n}, α = {self.alpha:g}")
        axes.legend()
        axes.grid(alpha=0.3)
        figure.tight_layout()
        return {f"{self.name}/certified_accuracy_vs_radius": figure}

    def _infer_num_classes(self, model: nn.Module, x: Tensor) -> int:
        if self.num_classes is None:
            with torch.no_grad():
                self.num_classes = int(model(x[:1]).shape[-1])
        return self.num_classes

    def _gathered_records(self) -> dict[str, np.ndarray]:
        """The records of all ranks (already gathered by torchmetrics), sorted by index."""
        arrays = {
            key.removeprefix("cert_"): dim_zero_cat(getattr(self, key)).cpu().numpy()
            if len(getattr(self, key)) > 0 else np.zeros(0)
            for key in _RECORDS
        }
        order = np.argsort(arrays["index"], kind="stable")
        return {key: value[order] for key, value in arrays.items()}


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) > 0 else float("nan")


def _image_seed(seed: int, index: int) -> int:
    """A well-mixed 63-bit seed for image ``index`` of a run with base ``seed``."""
    state = np.random.SeedSequence([seed, index]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])
