"""Base classifiers for randomized smoothing: Gaussian augmentation and consistency
regularization.

Both train on ``m`` noisy copies ``x + N(0, σ²I)`` of every image, in [0, 1] pixel space and
without clamping (the distribution the smoothing certificate is about). Consistency
regularization takes, by default, the official code's optimizer steps: one per chunk of
``B/m`` images of each loader batch (:class:`ConsistencyRegularization`). Validation adds the
accuracy of the base classifier under that noise and, optionally, the certified accuracy and
average certified radius of the smoothed classifier on a few validation images, computed with
:class:`~lit_robust.evaluation.SmoothedClassifier`.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from lit_robust.evaluation import ABSTAIN, SmoothedClassifier
from lit_robust.losses import consistency_loss
from lit_robust.methods.base import (
    Batch,
    RobustClassifier,
    check_finite_loss,
    check_pixel_range,
)
from lit_robust.models.modes import eval_mode

TrainingLoop = Literal["chunks", "batch"]


class GaussianAugmentation(RobustClassifier):
    """Cross-entropy on Gaussian-noise-augmented images (Cohen, Rosenfeld and Kolter,
    "Certified Adversarial Robustness via Randomized Smoothing", ICML 2019).

    Args:
        sigma: noise standard deviation in [0, 1] pixel units (the smoothing σ the model
            will be certified at, e.g. 0.25 or 0.5).
        num_noise_samples: noisy copies of each image per step (1 in the paper); the loss is
            their mean cross-entropy, all copies sharing one forward pass.
        val_certify_images: certify this many images of the first validation batch with the
            smoothed classifier (logs ``val/certified_acc`` at radius 0 and ``val/acr``);
            0 skips it.
        val_certify_n0: selection samples of that certification.
        val_certify_n: estimation samples of that certification.
        val_certify_alpha: failure probability of that certification.
        **kwargs: the arguments of :class:`~lit_robust.methods.base.RobustClassifier`.

    Raises:
        ValueError: for ``sigma <= 0`` (or a σ that looks like 0–255 units), fewer than one
            noise sample, or invalid certification settings.
    """

    def __init__(
        self,
        sigma: float = 0.5,
        num_noise_samples: int = 1,
        val_certify_images: int = 0,
        val_certify_n0: int = 10,
        val_certify_n: int = 100,
        val_certify_alpha: float = 0.001,
        **kwargs: Any,
    ) -> None:  # pragma: no mutate block (save_hyperparameters reads the signature)
        if not 0 < sigma <= 4:
            raise ValueError(
                f"sigma must be in (0, 4] pixel units (images are in [0, 1]; e.g. 0.25 or "
                f"0.5), got {sigma}"
            )
        if num_noise_samples < 1:
            raise ValueError(f"num_noise_samples must be >= 1, got {num_noise_samples}")
        if val_certify_images < 0 or val_certify_n0 < 1 or val_certify_n < 1:
            raise ValueError(
                f"need val_certify_images >= 0, val_certify_n0 >= 1 and val_certify_n >= 1, got "
                f"{val_certify_images}, {val_certify_n0}, {val_certify_n}"
            )
        if not 0 < val_certify_alpha < 1:
            raise ValueError(f"val_certify_alpha must lie in (0, 1), got {val_certify_alpha}")
        super().__init__(**kwargs)

    def _build_metrics(self, num_classes: int) -> None:
        super()._build_metrics(num_classes)
        self.val_noisy_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_certified_acc = MeanMetric()
        self.val_acr = MeanMetric()

    def noisy_copies(self, x: Tensor) -> Tensor:
        """``num_noise_samples`` copies of the batch plus N(0, σ²I), copy-major: (m·N, C, H, W)."""
        copies = x.repeat(self.hparams.num_noise_samples, 1, 1, 1)
        return copies + self.hparams.sigma * torch.randn_like(copies)

    def noisy_logits(self, x: Tensor) -> Tensor:
        """Logits of the noisy copies, shape (m, N, K)."""
        logits = self.model(self.noisy_copies(x))
        return logits.view(self.hparams.num_noise_samples, x.shape[0], -1)

    def training_loss(self, x: Tensor, x_adv: Tensor | None, y: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.noisy_logits(x)
        copies = logits.shape[0]
        loss = F.cross_entropy(logits.flatten(0, 1).float(), y.repeat(copies))
        return loss, logits[0]

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        super().validation_step(batch, batch_idx)
        x, y = batch
        keep = self.real_validation_images(batch_idx, y.shape[0]).to(y.device)
        x, y = x[keep.to(x.device)], y[keep]  # without a DDP shard's padding copies
        with eval_mode(self.model):
            noisy = x + self.hparams.sigma * torch.randn_like(x)
            if y.numel() > 0:
                self.val_noisy_acc.update(self.model(noisy), y)
        self.log("val/noisy_acc", self.val_noisy_acc, prog_bar=True)
        if batch_idx == 0 and self.hparams.val_certify_images > 0 and y.numel() > 0:
            self._certify_validation_images(x[: self.hparams.val_certify_images],
                                            y[: self.hparams.val_certify_images])

    def _certify_validation_images(self, x: Tensor, y: Tensor) -> None:
        hp = self.hparams
        smoothed = SmoothedClassifier(self.model, int(hp.num_classes), hp.sigma)
        generator = torch.Generator(device=x.device)
        generator.manual_seed(0)  # the same noise every epoch: epochs stay comparable
        predictions, radii = smoothed.certify_batch(
            x, hp.val_certify_n0, hp.val_certify_n, hp.val_certify_alpha,
            batch_size=max(hp.val_certify_n, hp.val_certify_n0) * len(x), generator=generator,
        )
        correct = (predictions == y.cpu()) & (predictions != ABSTAIN)
        self.val_certified_acc(correct.double().mean())
        self.val_acr(torch.where(correct, radii, 0.0).mean())
        self.log("val/certified_acc", self.val_certified_acc)
        self.log("val/acr", self.val_acr)


class ConsistencyRegularization(GaussianAugmentation):
    """Consistency regularization of Gaussian-augmented training (Jeong and Shin,
    "Consistency Regularization for Certified Robustness of Smoothed Classifiers",
    NeurIPS 2020).

    For ``m`` noisy copies of each image the loss is
    ``mean CE + λ·(1/m)·Σᵢ KL(p̂ ‖ pᵢ) + η·H(p̂)`` (:func:`~lit_robust.losses.consistency_loss`),
    ``p̂`` the mean softmax of the copies. The defaults are the transfer study's: σ = 0.5,
    m = 2, λ = 5, η = 0.5.

    The training loop (``training_loop``) is the official one by default (``"chunks"``: the
    ``train`` function of ``train_consistency.py`` in Jeong and Shin's code and in the
    transfer study's): each loader batch of B images is cut into m consecutive chunks of
    ⌊B/m⌋ images (the last B mod m images are not used, as there), every chunk is replicated m
    times with fresh noise and takes one optimizer step of its own, so a batch makes m steps
    on m·⌊B/m⌋ noisy images each. The learning-rate schedule (in epochs) advances once per
    loader batch. This runs with Lightning's manual optimization: ``trainer.global_step``
    counts optimizer steps (m per batch), and ``trainer.gradient_clip_val`` and
    ``accumulate_grad_batches`` are not available. ``"batch"`` takes one step per loader batch
    on all of its images, m noisy copies each (B·m samples).

    Args:
        sigma: noise standard deviation in [0, 1] pixel units.
        num_noise_samples: m, noisy copies of each image (>= 2 for a consistency term); with
            ``training_loop: chunks`` also the number of chunks (and steps) per batch.
        consistency_weight: λ, weight of the KL term.
        entropy_weight: η, weight of the entropy of the mean prediction.
        training_loop: ``"chunks"`` (m optimizer steps per loader batch, the official code)
            or ``"batch"`` (one step per loader batch).
        **kwargs: the arguments of :class:`GaussianAugmentation` (validation certification)
            and :class:`~lit_robust.methods.base.RobustClassifier`.

    Raises:
        ValueError: for negative weights, ``m = 1`` with a non-zero λ (one copy always
            agrees with itself: use :class:`GaussianAugmentation`), or an unknown
            ``training_loop``.
    """

    def __init__(
        self,
        sigma: float = 0.5,
        num_noise_samples: int = 2,
        consistency_weight: float = 5.0,
        entropy_weight: float = 0.5,
        training_loop: TrainingLoop = "chunks",
        **kwargs: Any,
    ) -> None:  # pragma: no mutate block (save_hyperparameters reads the signature)
        if training_loop not in ("chunks", "batch"):
            raise ValueError(f"training_loop must be 'chunks' (m optimizer steps per batch, the "
                             f"official code) or 'batch' (one step), got {training_loop!r}")
        if consistency_weight < 0 or entropy_weight < 0:
            raise ValueError(
                f"consistency_weight and entropy_weight must be >= 0, got {consistency_weight} "
                f"and {entropy_weight}"
            )
        if num_noise_samples < 2 and consistency_weight > 0:
            raise ValueError(
                "consistency regularization compares noisy copies: set num_noise_samples >= 2 "
                "(2 in the paper), or use GaussianAugmentation for a single copy"
            )
        super().__init__(sigma=sigma, num_noise_samples=num_noise_samples, **kwargs)
        self.automatic_optimization = training_loop == "batch"

    def training_loss(self, x: Tensor, x_adv: Tensor | None, y: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.noisy_logits(x)
        loss = consistency_loss(logits, y, self.hparams.consistency_weight,
                                self.hparams.entropy_weight)
        return loss, logits[0]

    def chunks(self, x: Tensor, y: Tensor) -> list[tuple[Tensor, Tensor]]:
        """The m consecutive chunks of ⌊B/m⌋ images of a batch (none when B < m), as the
        official ``_chunk_minibatch``."""
        copies = self.hparams.num_noise_samples
        size = x.shape[0] // copies
        if size == 0:
            return []
        return [(x[i * size:(i + 1) * size], y[i * size:(i + 1) * size]) for i in range(copies)]

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor | None:
        """One step per batch (``training_loop: batch``), else one per chunk (see the class)."""
        if self.automatic_optimization:
            return super().training_step(batch, batch_idx)
        x, y = batch
        if batch_idx == 0 and self.current_epoch == 0:
            check_pixel_range(x)
        optimizer = self.optimizers()
        for x_chunk, y_chunk in self.chunks(x, y):
            loss, logits = self.training_loss(x_chunk, None, y_chunk)
            check_finite_loss(loss, self.current_epoch, self.global_step, batch_idx)
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()
            self.train_loss(loss.detach())
            self.train_metrics(logits.detach(), y_chunk)
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()  # the schedule is in epochs of loader batches
        self.log("train/loss", self.train_loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True)
        return None
