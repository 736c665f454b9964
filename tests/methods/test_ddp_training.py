"""``fit`` and ``test`` of AdversarialTraining, TWINS and RiFT on 2 CPU processes (ddp_spawn,
gloo) on real CIFAR-10 images.

Each case checks that the metrics reduced over both processes equal a single-process test of
the checkpoint they wrote, that each process trained on its own half of the training images
and that both processes end ``fit`` with the same model (TWINS: both wings; RiFT: the same
module, MRC table and α, searched for by process 0 only).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor

from lit_robust.attacks import PGDAttack
from lit_robust.data import CIFAR10DataModule
from lit_robust.evaluation import CleanAccuracy, PGDEvaluator, SmoothingCertification
from lit_robust.methods import TWINS, AdversarialTraining, RobustClassifier
from lit_robust.methods.rift import RiFT
from lit_robust.models.zoo import build_backbone

pytestmark = pytest.mark.slow

TRAIN_IMAGES = 20  # 2 per class; each process trains on 10 of them per epoch
TEST_IMAGES = 9  # odd: rank 1's shard is padded with a copy of test image 0
EPOCHS = 2
ONE_STEP = {"eps": 8 / 255, "step_size": 8 / 255, "steps": 1}


def _data(batch_size: int = 4) -> CIFAR10DataModule:
    # No augmentation: a training image is recognised by its pixels.
    return CIFAR10DataModule(samples_per_class=2, val_size=20, val_samples_per_class=1,
                             test_first_n=TEST_IMAGES, batch_size=batch_size, num_workers=0,
                             augment=False)


def _evaluators(certify: bool = False) -> list[Any]:
    evaluators = [CleanAccuracy(),
                  PGDEvaluator(eps=8 / 255, step_size=4 / 255, steps=2, random_start=False)]
    if certify:  # test images 0 and 6 (rank 0) and 3 (rank 1)
        evaluators.append(SmoothingCertification(sigma=0.25, n0=4, n=16, batch_size=32, skip=3,
                                                 max_images=3))
    return evaluators


def image_key(image: Tensor) -> str:
    """A training image's identity: a hash of its 8-bit pixels."""
    pixels = image.mul(255).round().to(torch.uint8).cpu().numpy().tobytes()
    return hashlib.sha1(pixels).hexdigest()


class PerRank(Callback):
    """Writes ``rank<r>.pt`` at the end of ``fit``: the training images each epoch of this
    process saw (by :func:`image_key`), its model's state and its RiFT record."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.seen: dict[int, list[str]] = {}

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self.seen.setdefault(trainer.current_epoch, []).extend(image_key(x) for x in batch[0])

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        record: dict[str, Any] = {
            "seen": self.seen,
            "state": {k: v.detach().cpu().clone() for k, v in pl_module.model.state_dict().items()},
        }
        if isinstance(pl_module, RiFT):
            record["rift"] = {**pl_module.summary(), "searches": pl_module.searches}
        torch.save(record, Path(self.folder, f"rank{trainer.global_rank}.pt"))


class CountingRiFT(RiFT):
    """RiFT that counts the MRC searches its process ran."""

    searches = 0

    def _criticality_table(self) -> Any:
        self.searches += 1
        return super()._criticality_table()


def _pretrained(tmp_path: Path) -> str:
    """A tiny CNN whose BatchNorms hold statistics of (random) images, as a state dict."""
    torch.manual_seed(1)
    net = build_backbone("tiny_cnn", num_classes=10)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(16, 3, 32, 32) * 0.5 + 0.25)
    path = tmp_path / "pretrained.pt"
    torch.save(net.state_dict(), path)
    return str(path)


def _trainer(tmp_path: Path, **kwargs: Any) -> Trainer:
    defaults: dict[str, Any] = dict(
        accelerator="cpu", max_epochs=EPOCHS, inference_mode=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0)
    defaults.update(kwargs)
    return Trainer(**defaults)


def fit_and_test(make: Any, tmp_path: Path, batch_size: int = 4,
                 **fit_args: Any) -> dict[str, Any]:
    """Fit ``make()`` on 2 processes with batches of ``batch_size``, test its ``last.ckpt``
    there and in one process.

    Returns the two reports, the per-rank records and the training images.
    """
    seed_everything(0)
    method: RobustClassifier = make()
    method.report_dir = str(tmp_path / "ddp")
    trainer = _trainer(
        tmp_path, strategy="ddp_spawn", devices=2,
        logger=TensorBoardLogger(str(tmp_path), name="logs"),
        callbacks=[ModelCheckpoint(dirpath=str(tmp_path / "checkpoints"), save_last=True),
                   PerRank(str(tmp_path))], **fit_args)
    trainer.fit(method, _data(batch_size))
    last = str(tmp_path / "checkpoints" / "last.ckpt")
    trainer.test(method, _data(batch_size), ckpt_path=last, verbose=False)

    single = make()
    single.report_dir = str(tmp_path / "single")
    _trainer(tmp_path, devices=1, logger=False, enable_checkpointing=False).test(
        single, _data(batch_size), ckpt_path=last, verbose=False)
    train = _data(batch_size)
    train.setup("fit")
    return {
        "ddp": json.loads((tmp_path / "ddp" / "report.json").read_text()),
        "single": json.loads((tmp_path / "single" / "report.json").read_text()),
        "ranks": [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)],
        "train_keys": [image_key(x) for x, _ in (train.train_dataset[i] for i in
                                                  range(len(train.train_dataset)))],
        "checkpoint": torch.load(last, map_location="cpu", weights_only=False),
    }


def check_reduced_metrics_match_one_process(result: dict[str, Any]) -> None:
    ddp, single = result["ddp"], result["single"]
    assert ddp["metrics"].keys() == single["metrics"].keys()
    for key, value in single["metrics"].items():
        if "seconds" not in key:  # timings differ
            assert ddp["metrics"][key] == pytest.approx(value, abs=1e-6), key
    counted = ddp["provenance"]["images_per_metric"]
    assert counted == single["provenance"]["images_per_metric"]
    assert counted["clean_acc"] == TEST_IMAGES


def check_disjoint_shards(result: dict[str, Any]) -> None:
    keys = result["train_keys"]
    assert len(set(keys)) == TRAIN_IMAGES  # the hash tells the training images apart
    for epoch in range(EPOCHS):
        shards = [rank["seen"][epoch] for rank in result["ranks"]]
        assert [len(shard) for shard in shards] == [TRAIN_IMAGES // 2] * 2, epoch
        assert sorted(shards[0] + shards[1]) == sorted(keys), epoch
    for rank in result["ranks"]:  # every epoch deals a new order
        assert rank["seen"][0] != rank["seen"][1]


def check_same_model_on_every_rank(result: dict[str, Any]) -> dict[str, Tensor]:
    first, second = (rank["state"] for rank in result["ranks"])
    assert first.keys() == second.keys()
    different = [k for k in first if not torch.equal(first[k], second[k])]
    assert different == []
    saved = {k.removeprefix("model."): v for k, v in result["checkpoint"]["state_dict"].items()
             if k.startswith("model.")}
    assert all(torch.equal(saved[k], v) for k, v in first.items())
    return first


def test_adversarial_training_on_two_processes(tmp_path: Path) -> None:
    def make() -> AdversarialTraining:
        return AdversarialTraining(backbone="tiny_cnn", attack=PGDAttack(**ONE_STEP), lr=0.05,
                                   val_attack=PGDAttack(**ONE_STEP),
                                   evaluators=_evaluators(certify=True))

    result = fit_and_test(make, tmp_path)
    check_reduced_metrics_match_one_process(result)
    assert result["ddp"]["metrics"]["smoothing_sigma0.25/num_images"] == 3  # test images 0, 3 and 6
    check_disjoint_shards(result)
    check_same_model_on_every_rank(result)


def test_twins_on_two_processes(tmp_path: Path) -> None:
    """Each process trains on 10 images per epoch in batches of 3: its last batch has one
    image, which trains only the frozen wing, and DDP still needs a gradient (zero) for the
    adaptive wing's parameters."""
    pretrained = _pretrained(tmp_path)

    def make() -> TWINS:
        return TWINS(backbone="tiny_cnn", pretrained=pretrained, attack=PGDAttack(**ONE_STEP),
                     lr=0.05, log_grad_ratio_every_n_steps=2, evaluators=_evaluators())

    result = fit_and_test(make, tmp_path, batch_size=3)
    check_reduced_metrics_match_one_process(result)
    check_disjoint_shards(result)
    state = check_same_model_on_every_rank(result)
    source = torch.load(pretrained, weights_only=True)
    bns = [k.removesuffix(".running_mean") for k in source if k.endswith(".running_mean")]
    assert bns
    for bn in bns:
        for stat in ("running_mean", "running_var"):
            # the frozen wing kept the pre-training statistics, the adaptive wing learned
            assert torch.equal(state[f"net.{bn}.frozen.{stat}"], source[f"{bn}.{stat}"])
            assert not torch.equal(state[f"net.{bn}.adaptive.{stat}"], source[f"{bn}.{stat}"])


def test_rift_on_two_processes(tmp_path: Path) -> None:
    pretrained = _pretrained(tmp_path)

    def make() -> CountingRiFT:
        return CountingRiFT(backbone="tiny_cnn", pretrained=pretrained, mrc_epochs=2,
                            mrc_batch_size=8, lr=0.5, mrc_attack=PGDAttack(**ONE_STEP),
                            interpolation_attack=PGDAttack(**ONE_STEP),
                            alphas=[0.0, 0.5, 1.0], evaluators=_evaluators())

    result = fit_and_test(make, tmp_path)
    check_reduced_metrics_match_one_process(result)
    check_disjoint_shards(result)
    check_same_model_on_every_rank(result)
    first, second = (rank["rift"] for rank in result["ranks"])
    assert (first.pop("searches"), second.pop("searches")) == (1, 0)
    assert first == second
    assert first["modules"] and first["mrc_table"] and first["alpha"] is not None
    assert result["checkpoint"]["rift"]["modules"] == first["modules"]
