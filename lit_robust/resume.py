"""What a killed ``fit`` needs to resume to the very result of an uninterrupted run.

A Lightning checkpoint holds the weights, the optimizer and scheduler states and the loops'
progress. Bit-identical resumption needs two more things, both saved in every checkpoint:

- the training order and the position within the epoch:
  :class:`~lit_robust.data.base.RobustDataModule` keeps them (its order and augmentation never
  touch the global random generators, see :mod:`lit_robust.data.sampling`);
- the global random states (PyTorch CPU and CUDA, NumPy, Python), which random attack starts
  and dropout draw from: :class:`RandomStateCheckpoint` saves them and restores them just
  before the first training batch after the resume, which is the moment they were saved at.

What a checkpoint does not hold is what Lightning accumulates for the epoch-level train
metrics (everything logged with ``on_epoch=True``: ``train/loss``, ``train/acc``, a method's
extra losses). After a resume in mid-epoch, the values of that one epoch therefore average only
the batches trained after the resume; later epochs are whole. :class:`RandomStateCheckpoint`
says so when it happens (a warning naming the epoch and the batch) and logs
``train/resumed_at_batch`` (the epoch's first batch after the resume) in that epoch, so the
partial epoch is visible in TensorBoard.

``--ckpt_path last`` finds the newest ``last.ckpt`` of earlier runs with
:func:`find_last_checkpoint`.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn

_VERSION = re.compile(r"version_(\d+)$")


class RandomStateCheckpoint(Callback):
    """Save the global random states in checkpoints; restore them when training resumes.

    A resume in mid-epoch is also reported: a warning and ``train/resumed_at_batch`` say that
    the epoch-level train metrics of that epoch cover only its batches from then on.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        state = np.random.get_state()
        python_version, python_state, python_gauss = random.getstate()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            "numpy": {"keys": torch.from_numpy(state[1].astype(np.int64)), "pos": int(state[2]),
                      "has_gauss": int(state[3]), "cached_gaussian": float(state[4])},
            "python": [python_version, list(python_state), python_gauss],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        if batch_idx > 0:
            _report_partial_epoch(trainer, pl_module, batch_idx)
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        numpy = state["numpy"]
        np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                             numpy["has_gauss"], numpy["cached_gaussian"]))
        version, python_state, gauss = state["python"]
        random.setstate((version, tuple(python_state), gauss))


def _report_partial_epoch(trainer: Trainer, pl_module: LightningModule, batch_idx: int) -> None:
    total = trainer.num_training_batches
    rest = f"last {total - batch_idx} batches" if total != float("inf") else "remaining batches"
    rank_zero_warn(
        f"training resumed in mid-epoch: epoch {trainer.current_epoch} restarts at batch "
        f"{batch_idx} of {total}, so its epoch-level train metrics (train/loss, train/acc and "
        f"whatever else is logged with on_epoch=True) average only its {rest}; later epochs "
        "are whole. train/resumed_at_batch marks this epoch in the logs"
    )
    pl_module.log("train/resumed_at_batch", float(batch_idx), on_step=False, on_epoch=True)


def find_last_checkpoint(run_folder: str | Path, version: int | str | None = None) -> Path | None:
    """The newest ``last.ckpt`` under ``<run_folder>/version_*/checkpoints/``.

    Args:
        run_folder: a logger's ``<save_dir>/<name>`` folder.
        version: look in this version only (``3`` or ``"version_3"``).

    Returns:
        The most recently written ``last.ckpt`` (highest version on ties), or ``None``.
    """
    folder = Path(run_folder)
    if version is not None:
        name = version if isinstance(version, str) else f"version_{version}"
        candidates = [folder / name / "checkpoints" / "last.ckpt"]
    else:
        candidates = list(folder.glob("version_*/checkpoints/last.ckpt"))
    found = [path for path in candidates if path.is_file()]
    if not found:
        return None
    return max(found, key=lambda path: (path.stat().st_mtime, run_version(path) or -1))


def run_version(checkpoint: str | Path) -> int | None:
    """``N`` of the ``version_N`` folder that holds ``checkpoint``, if there is one."""
    for part in reversed(Path(checkpoint).parts):
        match = _VERSION.match(part)
        if match:
            return int(match.group(1))
    return None
