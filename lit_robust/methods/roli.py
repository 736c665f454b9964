"""RoLI: robust linear initialization (Hua, Gu, Xue, Carlini, Wong and Qin, "Initialization
Matters for Adversarial Transfer Learning", CVPR 2024; official code: DongXzz/RoLI)."""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from lit_robust.errors import ConfigurationError
from lit_robust.methods.adversarial import AdversarialTraining
from lit_robust.models.checkpoint import load_weights, read_error
from lit_robust.models.normalize import NormalizedClassifier
from lit_robust.models.surgery import freeze, get_head, unfreeze

RoLIStage = Literal["probe", "finetune"]
PROBE_KEY = "roli_probe"


class RoLI(AdversarialTraining):
    """Adversarial fine-tuning that starts from an adversarially trained linear probe.

    RoLI has two stages, two runs of this method:

    1. ``stage: probe`` ("RanLI-Linear" in the official code): adversarial training of the
       classifier head alone on the frozen robust backbone, which stays in eval mode
       (BatchNorm keeps the pre-training statistics; the backbone's weights and buffers stay
       those of ``pretrained``). The method keeps the head of the epoch with the best
       validation robust accuracy (``val/robust_acc``; the last head when there is no
       validation) and writes it into every checkpoint, as the official code hands its
       ``best_model.pth`` to the second stage.
    2. ``stage: finetune``: adversarial fine-tuning of the whole network (or of a parameter
       selection, ``peft``: LoRA, adapters, bias-only) starting from the stage-1 checkpoint
       ``probe_checkpoint``: the backbone as stage 1 kept it and the best probe head, bit for
       bit. ``pretrained`` is not used (the checkpoint holds the whole network).

    The training objective is PGD adversarial training (cross-entropy on PGD examples made in
    eval mode), as :class:`~lit_robust.methods.adversarial.AdversarialTraining`. The official
    settings (Swin-B / ViT-B): PGD-7, L∞ 8/255, step 2/255 for training and PGD-10 for
    validation; batch 64; cosine schedule with 10 warm-up epochs; stage 1 SGD (lr 0.05–0.5),
    stage 2 AdamW (lr 1e-4 for full fine-tuning).

    Args:
        stage: ``"probe"`` (stage 1) or ``"finetune"`` (stage 2).
        probe_checkpoint: stage 2: the checkpoint of a ``stage: probe`` run (its
            ``last.ckpt``, or any checkpoint it wrote).
        **kwargs: the arguments of :class:`AdversarialTraining` (stage 1 needs
            ``pretrained`` and ``reset_head: true`` for a new task).

    Raises:
        ValueError: for an unknown stage, a stage-2 run without ``probe_checkpoint`` or with
            ``pretrained`` / ``reset_head``, or a stage-1 run with ``probe_checkpoint`` or
            ``peft``.
    """

    def __init__(
        self, stage: RoLIStage = "finetune", probe_checkpoint: str | None = None, **kwargs: Any
    ) -> None:  # pragma: no mutate block (save_hyperparameters reads the signature)
        if stage not in ("probe", "finetune"):
            raise ValueError(f"stage must be 'probe' or 'finetune', got {stage!r}")
        if stage == "finetune":
            if probe_checkpoint is None:
                raise ValueError(
                    "RoLI stage 2 (stage: finetune) starts from a stage-1 checkpoint: run the "
                    "stage-1 config (stage: probe) first and set model.probe_checkpoint to its "
                    "checkpoint (e.g. <log dir>/checkpoints/last.ckpt)"
                )
            if kwargs.get("pretrained") is not None or kwargs.get("reset_head"):
                raise ValueError(
                    "RoLI stage 2 takes the whole network from probe_checkpoint; drop "
                    "model.pretrained and model.reset_head (stage 1 used them)"
                )
        else:
            if probe_checkpoint is not None:
                raise ValueError("probe_checkpoint is the input of stage 2 (stage: finetune); "
                                 "stage 1 (stage: probe) starts from model.pretrained")
            if kwargs.get("peft") is not None:
                raise ValueError("RoLI stage 1 trains the head alone; model.peft belongs to "
                                 "stage 2")
        super().__init__(**kwargs)
        self.stage = stage
        self.keeps_source_layers = stage == "probe"  # the frozen backbone's normalization
        self.probe_checkpoint = probe_checkpoint
        self.best_head: dict[str, Tensor] | None = None
        self.best_head_accuracy = -math.inf

    # ------------------------------------------------------------------ model
    def transform_model(self, model: NormalizedClassifier) -> nn.Module:
        """Stage 1: freeze all but the head, backbone in eval mode. Stage 2: load the stage-1
        network and its best head."""
        if self.stage == "probe":
            freeze(model)
            head = unfreeze(get_head(model)[1])
            model.eval()
            head.train(self.training)
        else:
            self._load_probe(model)
        return model

    def train(self, mode: bool = True) -> RoLI:
        """Stage 1: train mode reaches the head only; the frozen backbone stays in eval mode."""
        super().train(mode)
        if mode and self.stage == "probe" and self.model is not None:
            self.model.eval()
            get_head(self.model)[1].train()
        return self

    def _load_probe(self, model: NormalizedClassifier) -> None:
        path = Path(self.probe_checkpoint)
        if not path.is_file():
            restoring = self._trainer is None or self._trainer.ckpt_path is not None
            if restoring:
                rank_zero_warn(f"RoLI stage-1 checkpoint {path} not found; the weights come "
                               "from the checkpoint being restored")
                return
            raise ConfigurationError(
                f"RoLI stage 2: the stage-1 checkpoint {path} does not exist (paths are relative "
                f"to the working directory {Path.cwd()}); run the stage-1 config (stage: probe) "
                "and pass its checkpoint as model.probe_checkpoint"
            )
        load_weights(model.net, str(path), skip_head=False)
        head = read_probe_head(path)
        if head is None:
            rank_zero_warn(f"{path} is not a RoLI stage-1 checkpoint (it has no '{PROBE_KEY}' "
                           "entry): stage 2 starts from the head saved in it")
            return
        get_head(model)[1].load_state_dict(head)

    # ------------------------------------------------------------------ stage 1: best head
    def on_validation_epoch_end(self) -> None:
        """Stage 1: keep the head of the best validation robust (else clean) accuracy."""
        if self.stage != "probe" or self.trainer.sanity_checking:
            return
        metric = self.val_robust_acc if self.val_robust_acc.update_count > 0 else None
        if metric is None:
            metric = self.val_metrics["acc"] if self.val_metrics["acc"].update_count > 0 else None
        if metric is None:
            return
        accuracy = float(metric.compute())
        if accuracy > self.best_head_accuracy:
            self.best_head_accuracy = accuracy
            self.best_head = {k: v.detach().clone()
                              for k, v in get_head(self.model)[1].state_dict().items()}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Stage 1: write the best head (the current one before any validation)."""
        if self.stage != "probe":
            return
        head = self.best_head
        if head is None:
            head = {k: v.detach().clone() for k, v in get_head(self.model)[1].state_dict().items()}
        checkpoint[PROBE_KEY] = {"head": head, "val_accuracy": self.best_head_accuracy}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        probe = checkpoint.get(PROBE_KEY)
        if self.stage == "probe" and probe is not None and math.isfinite(probe["val_accuracy"]):
            self.best_head = probe["head"]
            self.best_head_accuracy = float(probe["val_accuracy"])


def read_probe_head(path: str | Path) -> dict[str, Tensor] | None:
    """The best head a RoLI stage-1 checkpoint holds, or ``None`` for another checkpoint.

    Raises:
        CheckpointReadError: when the file cannot be read.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as error:
        raise read_error(str(path), error) from error
    if not isinstance(checkpoint, dict) or PROBE_KEY not in checkpoint:
        return None
    return checkpoint[PROBE_KEY]["head"]
