"""What a robustness report must say about how its numbers came about.

Which weights were evaluated (checkpoint path, epoch, step), which test images (dataset
folder, subset rule, count), how many images each metric counted and every evaluator's
settings: two reports that differ only in their numbers are otherwise indistinguishable.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import Tensor

from lit_robust.evaluation.base import Evaluator


def evaluated_weights(module: LightningModule) -> dict[str, Any]:
    """``{"source", "path", "epoch", "step"}`` of the weights under test."""
    trainer = module.trainer
    restored = getattr(module, "restored_from", None) or {}
    if trainer.ckpt_path:
        return {"source": "checkpoint", "path": str(Path(trainer.ckpt_path).resolve()),
                "epoch": restored.get("epoch"), "step": restored.get("step")}
    if trainer.global_step > 0:
        return {"source": "weights in memory at the end of fit", "path": None,
                "epoch": trainer.current_epoch, "step": trainer.global_step}
    pretrained = module.hparams.get("pretrained") if hasattr(module, "hparams") else None
    if pretrained:
        return {"source": "pretrained", "path": str(Path(pretrained).resolve()),
                "epoch": None, "step": None}
    return {"source": "untrained: freshly initialized weights", "path": None, "epoch": None,
            "step": None}


def images_counted(evaluator: Evaluator) -> int | None:
    """Test images the evaluator counted (its ``total`` state) in all processes together,
    ``None`` if it keeps none. Every process must call it (under DDP it sums the counts)."""
    total = getattr(evaluator, "total", None)
    if isinstance(total, Tensor) and total.numel() > 0:
        return int(_summed_over_processes(total.detach().clone()).max())
    records = getattr(evaluator, "predictions", None)
    if isinstance(records, list):
        count = sum(int(r.numel()) for r in records if isinstance(r, Tensor))
        return int(_summed_over_processes(torch.tensor(count, device=evaluator.device)))
    return None


def _summed_over_processes(count: Tensor) -> Tensor:
    """``count`` summed over the DDP processes (the evaluator states are per process again
    after ``compute``); ``count`` itself without DDP."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(count)
    return count


def evaluator_settings(evaluator: Evaluator) -> dict[str, Any]:
    """The evaluator's class and the values of its constructor arguments it keeps."""
    settings: dict[str, Any] = {"class": type(evaluator).__name__, "name": evaluator.name}
    for name in inspect.signature(type(evaluator).__init__).parameters:
        if name in ("self", "name"):
            continue
        for attribute in (name, f"_{name}"):
            value = getattr(evaluator, attribute, None)
            if isinstance(value, (bool, int, float, str, list, tuple)) or value is None:
                if value is not None or hasattr(evaluator, attribute):
                    settings[name] = list(value) if isinstance(value, tuple) else value
                    break
    attacks = getattr(evaluator, "attacks", None)
    if isinstance(attacks, list) and attacks and not isinstance(attacks[0], str):
        settings["attacks"] = [repr(attack) for attack in attacks]
    return settings


def test_data(module: LightningModule) -> dict[str, Any] | None:
    """The DataModule's description of the test images, when it gives one."""
    datamodule = getattr(module.trainer, "datamodule", None)
    describe = getattr(datamodule, "describe_test_data", None)
    return describe() if callable(describe) else None
