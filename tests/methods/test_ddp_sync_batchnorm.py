"""``trainer.sync_batchnorm`` with our models: AdversarialTraining's BatchNorms and both wings
of TWINS' dual BatchNorms become ``SyncBatchNorm``; the frozen wing stays frozen (eval-mode
normalization, statistics untouched, never synchronized) and the adaptive wing trains on the
statistics of all processes' batches.

torch's ``SyncBatchNorm`` synchronizes only GPU tensors (DDP refuses to wrap a CPU model that
holds one), so the 2-process CPU test converts with Lightning's own plugin and then turns the
converted layers into :class:`CPUSyncBatchNorm`, which all-reduces the batch statistics with
gloo.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed.nn.functional as dist_fn
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything
from lightning.pytorch.plugins import TorchSyncBatchNorm
from torch import Tensor, nn

from lit_robust.attacks import PGDAttack
from lit_robust.data import CIFAR10DataModule
from lit_robust.evaluation import CleanAccuracy
from lit_robust.methods import TWINS, AdversarialTraining
from lit_robust.models.dual_bn import dual_batchnorms, use_wing
from lit_robust.models.zoo import build_backbone

ONE_STEP = {"eps": 8 / 255, "step_size": 8 / 255, "steps": 1}


class CPUSyncBatchNorm(nn.BatchNorm2d):
    """A BatchNorm whose train-mode statistics are all-reduced (autograd-aware) over the
    processes, on any device; eval mode is torch's (running statistics, no communication)."""

    synced = 0

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return super().forward(x)
        self.synced += 1
        channels = x.shape[1]
        count = torch.full((1,), x.numel() / channels, dtype=x.dtype)
        stats = dist_fn.all_reduce(torch.cat([x.sum((0, 2, 3)), x.square().sum((0, 2, 3)), count]))
        n = stats[-1]
        mean = stats[:channels] / n
        var = stats[channels:2 * channels] / n - mean.square()
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_(var.detach() * n / (n - 1), self.momentum)
        shape = (1, channels, 1, 1)
        out = (x - mean.view(shape)) / (var.view(shape) + self.eps).sqrt()
        return out * self.weight.view(shape) + self.bias.view(shape)


class CPUSync(TorchSyncBatchNorm):
    """Lightning's ``sync_batchnorm`` conversion, with :class:`CPUSyncBatchNorm` layers."""

    def apply(self, model: nn.Module) -> nn.Module:
        model = super().apply(model)
        for module in model.modules():
            if type(module) is nn.SyncBatchNorm:
                assert module.process_group is None and module.affine
                module.__class__ = CPUSyncBatchNorm
        return model


class PerRank(Callback):
    """Saves each process's model state and how often each sync layer synchronized."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        record = {
            "state": {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()},
            "synced": {name: m.synced for name, m in pl_module.model.named_modules()
                       if isinstance(m, CPUSyncBatchNorm)},
            "plain_bns": [name for name, m in pl_module.model.named_modules()
                          if type(m) is nn.BatchNorm2d],
        }
        torch.save(record, Path(self.folder, f"rank{trainer.global_rank}.pt"))


def _pretrained(tmp_path: Path) -> str:
    torch.manual_seed(1)
    net = build_backbone("tiny_cnn", num_classes=10)
    with torch.no_grad():
        net.train()(torch.rand(16, 3, 32, 32) * 0.5 + 0.25)
    path = tmp_path / "pretrained.pt"
    torch.save(net.state_dict(), path)
    return str(path)


def test_lightning_conversion_keeps_the_frozen_wing_frozen(tmp_path: Path) -> None:
    twins = TWINS(backbone="tiny_cnn", num_classes=10, mean=[0.5] * 3, std=[0.25] * 3,
                  pretrained=_pretrained(tmp_path), attack=PGDAttack(**ONE_STEP))
    twins.configure_model()
    TorchSyncBatchNorm().apply(twins)  # what Trainer(sync_batchnorm=True) does
    layers = dual_batchnorms(twins.model)
    assert layers and all(isinstance(layer.frozen, nn.SyncBatchNorm)
                          and isinstance(layer.adaptive, nn.SyncBatchNorm) for layer in layers)
    before = {k: v.clone() for k, v in twins.model.state_dict().items()}
    x, y = torch.rand(8, 3, 32, 32), torch.arange(8)
    twins.model.train()
    with use_wing(twins.model, "frozen"):
        trained = twins.model(x)
        with torch.no_grad():
            evaluated = twins.model.eval()(x)
    assert torch.allclose(trained, evaluated)
    twins.model.train()
    loss, _ = twins.training_loss(x, twins.make_adversarial(x, y), y)  # one process: no sync
    loss.backward()
    after = twins.model.state_dict()
    frozen = [k for k in after if ".frozen." in k]
    adaptive = [k for k in after if ".adaptive.running" in k]
    assert frozen and all(torch.equal(after[k], before[k]) for k in frozen)
    assert adaptive and all(not torch.equal(after[k], before[k]) for k in adaptive)

    # Lightning reverts the layers after fit: same state keys, same outputs
    with torch.no_grad():
        synced = twins.model.eval()(x)
        TorchSyncBatchNorm().revert(twins)
        assert not any(isinstance(m, nn.SyncBatchNorm) for m in twins.modules())
        assert twins.model.state_dict().keys() == after.keys()
        # the new layers start in train mode; evaluation puts the whole model in eval mode
        assert torch.equal(twins.model.eval()(x), synced)


def _fit_with_sync_batchnorm(method: LightningModule, tmp_path: Path) -> list[dict[str, Any]]:
    seed_everything(0)
    data = CIFAR10DataModule(samples_per_class=2, val_size=0, test_samples_per_class=1,
                             batch_size=4, num_workers=0)
    trainer = Trainer(accelerator="cpu", strategy="ddp_spawn", devices=2, sync_batchnorm=True,
                      plugins=[CPUSync()], max_epochs=1, limit_train_batches=2,
                      logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, inference_mode=False,
                      callbacks=[PerRank(str(tmp_path))])
    trainer.fit(method, data)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]


def _same_on_both(records: list[dict[str, Any]]) -> dict[str, Tensor]:
    first, second = (r["state"] for r in records)
    assert [k for k in first if not torch.equal(first[k], second[k])] == []
    return first


@pytest.mark.slow
def test_adversarial_training_with_sync_batchnorm_on_two_processes(tmp_path: Path) -> None:
    method = AdversarialTraining(backbone="tiny_cnn", attack=PGDAttack(**ONE_STEP), lr=0.05,
                                 evaluators=[CleanAccuracy()])
    records = _fit_with_sync_batchnorm(method, tmp_path)
    for record in records:
        assert record["plain_bns"] == []
        assert len(record["synced"]) == 4 and all(n > 0 for n in record["synced"].values())
    _same_on_both(records)


@pytest.mark.slow
def test_twins_with_sync_batchnorm_on_two_processes(tmp_path: Path) -> None:
    pretrained = _pretrained(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        method = TWINS(backbone="tiny_cnn", pretrained=pretrained, attack=PGDAttack(**ONE_STEP),
                       lr=0.05, evaluators=[CleanAccuracy()])
    records = _fit_with_sync_batchnorm(method, tmp_path)
    for record in records:
        synced = record["synced"]
        frozen = {k: n for k, n in synced.items() if k.endswith(".frozen")}
        adaptive = {k: n for k, n in synced.items() if k.endswith(".adaptive")}
        assert record["plain_bns"] == [] and len(frozen) == len(adaptive) == 4
        assert set(frozen.values()) == {0}  # the frozen wing never synchronizes
        assert all(n > 0 for n in adaptive.values())
    state = _same_on_both(records)
    source = torch.load(pretrained, weights_only=True)
    for key, value in source.items():
        if "running" in key:
            bn, stat = key.rsplit(".", 1)
            assert torch.equal(state[f"net.{bn}.frozen.{stat}"], value), key
            assert not torch.equal(state[f"net.{bn}.adaptive.{stat}"], value), key
