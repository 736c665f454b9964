"""SimCLR self-supervised pre-training (Chen et al., ICML 2020) as a transfer source."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric

from lit_robust.errors import ConfigurationError
from lit_robust.evaluation.base import rank_and_world_size
from lit_robust.losses import nt_xent
from lit_robust.methods.base import Batch, RobustClassifier
from lit_robust.methods.simclr.augment import SimCLRAugmentation
from lit_robust.methods.simclr.gather import gather_with_grad
from lit_robust.models.modes import eval_mode
from lit_robust.models.surgery import get_head


def projection_head(in_features: int, hidden_features: int, out_features: int) -> nn.Sequential:
    """SimCLR's MLP projection head: Linear → BatchNorm → ReLU → Linear."""
    return nn.Sequential(
        nn.Linear(in_features, hidden_features, bias=False),
        nn.BatchNorm1d(hidden_features),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_features, out_features),
    )


class SimCLR(RobustClassifier):
    """SimCLR contrastive pre-training (Chen, Kornblith, Norouzi and Hinton, "A Simple
    Framework for Contrastive Learning of Visual Representations", ICML 2020).

    Every training batch yields two random views per image, drawn on the device by
    :class:`~lit_robust.methods.simclr.augment.SimCLRAugmentation`; both pass through the
    backbone's features and the MLP ``projector``, and NT-Xent (:func:`~lit_robust.losses.nt_xent`)
    pulls the two views of an image together against the other images of the batch. Under
    DDP the batch is the global one: with ``gather_negatives`` every process contrasts its
    views with the projections of all processes
    (:func:`~lit_robust.methods.simclr.gather.gather_with_grad`), as the paper does across its
    TPU cores.

    The backbone's own classifier head is trained at the same time as an *online linear
    probe* on the detached features of the first view (cross-entropy with the labels, no
    gradient into the backbone), so ``val/acc`` and the test evaluators measure how linearly
    separable the representation is while it is learned.

    Hand-off: the checkpoint keeps the classifier under ``model.`` (like every method) and the
    projection head under ``projector.``, which checkpoint loading ignores, so
    ``pretrained: <simclr ckpt>`` with ``reset_head: true`` gives any method the pre-trained
    backbone without projector and probe.

    Args:
        temperature: τ of NT-Xent (0.5 for CIFAR-size images in the paper, 0.1 for ImageNet
            with large batches).
        projection_dim: output size of the projection head (128 in the paper).
        projection_hidden_dim: hidden size of the projection head; ``None`` uses the
            backbone's feature size.
        crop_scale: range of the random resized crop's area fraction.
        jitter_strength: colour-jitter strength s (0.5 for CIFAR-size images, 1.0 for
            ImageNet).
        jitter_probability: probability of the colour jitter.
        grayscale_probability: probability of the grayscale conversion.
        blur_probability: probability of the Gaussian blur (0 for small images, 0.5 for
            ImageNet).
        gather_negatives: under DDP, take negatives from every process's batch (the paper);
            ``False`` contrasts within each process's batch only. No effect in one process.
        **kwargs: the arguments of :class:`~lit_robust.methods.base.RobustClassifier`
            (``optimizer: lars`` with ``schedule: cosine`` and ``warmup_epochs`` is the
            paper's large-batch setting; SGD with the same schedule suits small batches).

    Raises:
        ValueError: for ``temperature <= 0``, non-positive projection sizes, or augmentation
            settings outside their ranges.
    """

    def __init__(
        self,
        temperature: float = 0.5,
        projection_dim: int = 128,
        projection_hidden_dim: int | None = None,
        crop_scale: Sequence[float] = (0.08, 1.0),
        jitter_strength: float = 0.5,
        jitter_probability: float = 0.8,
        grayscale_probability: float = 0.2,
        blur_probability: float = 0.0,
        gather_negatives: bool = True,
        **kwargs: Any,
    ) -> None:  # pragma: no mutate block (save_hyperparameters reads the signature)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0 (e.g. 0.5), got {temperature}")
        if projection_dim < 1 or (projection_hidden_dim is not None and projection_hidden_dim < 1):
            raise ValueError(
                f"projection sizes must be >= 1, got projection_dim={projection_dim}, "
                f"projection_hidden_dim={projection_hidden_dim}"
            )
        augmentation = SimCLRAugmentation(
            crop_scale=crop_scale, jitter_strength=jitter_strength,
            jitter_probability=jitter_probability, grayscale_probability=grayscale_probability,
            blur_probability=blur_probability,
        )
        super().__init__(**kwargs)
        self.augmentation = augmentation
        self.projector: nn.Module | None = None
        self.val_contrastive_loss = MeanMetric()

    def configure_model(self) -> None:
        """Build the classifier (see the base), then the projection head on its features."""
        if self.projector is not None:
            return
        super().configure_model()
        features = get_head(self.model.net)[1].in_features
        hidden = self.hparams.projection_hidden_dim or features
        self.projector = projection_head(features, hidden, self.hparams.projection_dim)

    def on_train_start(self) -> None:
        """Refuse a training batch of one image (per process, or in all processes together
        with ``gather_negatives``), before the first step.

        Raises:
            ConfigurationError: the two views of the one image are each other's only
                candidates, so NT-Xent is exactly 0 with a zero gradient: nothing would train.
        """
        super().on_train_start()
        batch_size = getattr(self.trainer.train_dataloader, "batch_size", None)
        processes = self.trainer.world_size if self.hparams.gather_negatives else 1
        if batch_size is not None and batch_size * processes < 2:
            alone = " in each process (gather_negatives: false)" if self.trainer.world_size > 1 \
                else ""
            raise ConfigurationError(
                f"SimCLR needs at least 2 images per training batch, got batch_size={batch_size}"
                f"{alone}: the two views of one image are each other's only candidates, so "
                "NT-Xent and its gradient are exactly 0 and nothing trains; set "
                "data.init_args.batch_size >= 2 (the paper uses 256 to 8192)"
            )

    def param_groups(self) -> list[nn.Parameter]:
        """Backbone, probe head and projection head."""
        modules = (self.model, self.projector)
        return [p for module in modules for p in module.parameters() if p.requires_grad]

    def views(self, x: Tensor) -> Tensor:
        """Two random views of every image, stacked view-major: (2N, C, H, W)."""
        return torch.cat([self.augmentation(x), self.augmentation(x)])

    def contrastive_loss(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """NT-Xent of two fresh views of ``x``, and the backbone features of the first view."""
        features = self.model.features(self.views(x))
        projections = self.projector(features)
        z1, z2 = projections.chunk(2)
        return self.nt_xent(z1, z2), features[: x.shape[0]]

    def nt_xent(self, z1: Tensor, z2: Tensor) -> Tensor:
        """NT-Xent of this process's views against the views of the (global) batch.

        Under DDP with ``gather_negatives`` the mean of this loss over the processes is the
        loss of the global batch, and DDP's averaged gradients are its gradients.
        """
        rank, world_size = rank_and_world_size()
        if not self.hparams.gather_negatives or world_size == 1:
            return nt_xent(z1, z2, self.hparams.temperature)
        batch = z1.shape[0]
        gathered = gather_with_grad(torch.cat([z1, z2])).unflatten(0, (world_size, 2, batch))
        candidates = (gathered[:, 0].flatten(0, 1), gathered[:, 1].flatten(0, 1))
        return nt_xent(z1, z2, self.hparams.temperature, candidates, offset=rank * batch)

    def training_loss(self, x: Tensor, x_adv: Tensor | None, y: Tensor) -> tuple[Tensor, Tensor]:
        contrastive, features = self.contrastive_loss(x)
        logits = get_head(self.model.net)[1](features.detach())
        probe = F.cross_entropy(logits, y)
        self.log("train/nt_xent", contrastive.detach(), on_step=True, on_epoch=True)
        self.log("train/probe_loss", probe.detach(), on_step=False, on_epoch=True)
        return contrastive + probe, logits

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        super().validation_step(batch, batch_idx)
        x, _ = batch
        with eval_mode(self.model), eval_mode(self.projector):
            loss, _ = self.contrastive_loss(x)
        self.val_contrastive_loss(loss)
        self.log("val/nt_xent", self.val_contrastive_loss, prog_bar=True)
