"""The device-resident uint8 training cache: the ordinary loader's images without augmentation,
crops and flips as RandomCropFlip draws them, DDP shards, and a fit through the CLI."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from lightning.pytorch import Trainer
from lightning.pytorch.utilities.data import _update_dataloader

from lit_robust.data import CIFAR10DataModule, GTSRBDataModule, read_image
from lit_robust.data.device_cache import CachedBatch, DeviceImageCache
from lit_robust.data.sampling import ResumableRandomSampler
from lit_robust.main import cli
from tests.test_cli_runs import TINY


def _cifar(shared_data, **kwargs) -> CIFAR10DataModule:
    dm = CIFAR10DataModule(root=str(shared_data), samples_per_class=10, val_size=100,
                           num_workers=0, batch_size=16, **kwargs)
    dm.setup("fit")
    return dm


def _batches(dm, seed: int = 0) -> list:
    torch.manual_seed(seed)  # the order's seed is drawn from the global generator
    return [dm.on_after_batch_transfer(batch, 0) for batch in dm.train_dataloader()]


def test_without_augmentation_the_images_are_those_of_the_ordinary_loader(shared_data):
    ordinary = _batches(_cifar(shared_data, augment=False))
    cached_dm = _cifar(shared_data, augment=False, device_cache=True)
    cached = _batches(cached_dm)
    assert isinstance(cached_dm.train_dataset, DeviceImageCache)
    assert len(cached) == len(ordinary) == 7  # 100 images in batches of 16
    for (x, y), (x_cached, y_cached) in zip(ordinary, cached, strict=True):
        assert x_cached.dtype == torch.float32 and x_cached.is_contiguous()
        assert torch.equal(x, x_cached) and torch.equal(y, y_cached)
    # the cache holds the decoded JPEGs themselves
    cache = cached_dm.train_dataset
    first = int(cached_dm.train_indices[0])
    files = sorted((shared_data / "cifar10-jpeg" / "train").glob("*/*.*"))
    assert torch.equal(cache.images[0], read_image(files[first]))


def test_crops_are_shifts_of_the_reflect_padded_image_flipped_about_half_the_time(shared_data):
    dm = _cifar(shared_data, device_cache=True)
    cache = dm.train_dataset
    torch.manual_seed(1)
    raw = list(dm.train_dataloader())
    for batch in raw:
        images, labels = dm.on_after_batch_transfer(batch, 0)
        assert torch.equal(labels, cache.labels[batch.indices])
        padded = F.pad(cache.images[batch.indices].float(), [4] * 4, mode="reflect") / 255
        for i, (top, left, flip) in enumerate(zip(batch.top.tolist(), batch.left.tolist(),
                                                  batch.flip.tolist(), strict=True)):
            crop = padded[i, :, top:top + 32, left:left + 32]
            assert torch.equal(images[i], crop.flip(-1) if flip else crop)
    tops = torch.cat([batch.top for batch in raw])
    assert 0 <= tops.min() and tops.max() <= 8 and len(tops.unique()) > 5
    assert not torch.equal(tops, torch.cat([batch.left for batch in raw]))
    assert 0.3 < torch.cat([batch.flip for batch in raw]).float().mean() < 0.7


def test_augmentation_statistics_over_many_draws():
    images = torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8)
    cache = DeviceImageCache(images, torch.zeros(50, dtype=torch.int64), 32, 4, flip=True)
    sampler = ResumableRandomSampler(50, seed=3)
    keys = []
    for epoch in range(400):
        sampler.set_epoch(epoch)
        keys.extend(sampler)
    batch = cache.__getitems__(keys)  # 20,000 draws
    assert abs(batch.flip.float().mean().item() - 0.5) < 0.02  # 5.7 standard deviations
    for offsets in (batch.top, batch.left):
        frequencies = torch.bincount(offsets, minlength=9).float() / len(offsets)
        assert len(frequencies) == 9 and (frequencies - 1 / 9).abs().max() < 0.012
    joint = torch.bincount(batch.top * 9 + batch.left, minlength=81).float() / len(keys)
    assert (joint - 1 / 81).abs().max() < 0.006  # top and left independent
    no_flip = DeviceImageCache(images, cache.labels, 32, 4, flip=False).__getitems__(keys)
    assert not no_flip.flip.any() and torch.equal(no_flip.top, batch.top)


def test_the_order_and_augmentation_follow_the_seed(shared_data):
    dm = _cifar(shared_data, device_cache=True)

    def raw(seed):
        dm._order_seed = None  # drawn again from the global generator
        torch.manual_seed(seed)
        return torch.cat([torch.stack(batch) for batch in dm.train_dataloader()], dim=1)

    first = raw(0)
    assert torch.equal(first, raw(0)) and not torch.equal(first, raw(1))


def test_a_run_resumed_mid_epoch_sees_the_same_batches(shared_data):
    dm = _cifar(shared_data, device_cache=True)
    torch.manual_seed(0)
    uninterrupted = list(dm.train_dataloader())
    resumed = _cifar(shared_data, device_cache=True)
    resumed.load_state_dict({"order_seed": dm._order_seed, "epoch": 0, "batches_done": 2})
    rest = list(resumed.train_dataloader())
    assert len(rest) == len(uninterrupted) - 2
    for expected, batch in zip(uninterrupted[2:], rest, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(expected, batch, strict=True))


def test_each_ddp_rank_gets_its_shard_of_the_indices(shared_data):
    dm = _cifar(shared_data, device_cache=True)
    torch.manual_seed(0)
    loader = dm.train_dataloader()
    shards = []
    for rank in range(2):
        sampler = DistributedSamplerWrapper(loader.sampler, num_replicas=2, rank=rank,
                                            shuffle=False)
        sharded = _update_dataloader(loader, sampler)
        batches = list(sharded)
        assert all(isinstance(batch, CachedBatch) for batch in batches)
        shards.append(torch.cat([batch.indices for batch in batches]).tolist())
    assert len(shards[0]) == len(shards[1]) == 50
    assert not set(shards[0]) & set(shards[1]) and set(shards[0]) | set(shards[1]) == set(
        range(100))


def test_gtsrb_is_resized_once_and_never_mirrored(shared_data):
    dm = GTSRBDataModule(root=str(shared_data), samples_per_class=2, val_size=0.2,
                         num_workers=0, batch_size=32, device_cache=True)
    dm.setup("fit")
    assert dm.train_dataset.images.shape[1:] == (3, 32, 32)
    torch.manual_seed(0)
    batch = next(iter(dm.train_dataloader()))
    assert not batch.flip.any() and batch.top.max() > 0
    images, labels = dm.on_after_batch_transfer(batch, 0)
    assert images.shape == (len(labels), 3, 32, 32) and 0 <= images.min() <= images.max() <= 1


def test_images_get_the_dtype_cast_of_true_precision(shared_data):
    dm = _cifar(shared_data, device_cache=True)
    torch.manual_seed(0)
    batch = next(iter(dm.train_dataloader()))
    expected, _ = dm.on_after_batch_transfer(batch, 0)
    dm.trainer = Trainer(accelerator="cpu", precision="bf16-true", logger=False)
    images, _ = dm.on_after_batch_transfer(batch, 0)
    assert images.dtype == torch.bfloat16 and torch.equal(images, expected.bfloat16())


def test_device_cache_refuses_random_resized_crops():
    with pytest.raises(ValueError, match="device_cache=True .* resize='resize_center_crop'"):
        CIFAR10DataModule(resize="resize_center_crop", device_cache=True)


def test_fit_through_the_cli_with_the_device_cache(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])
    run = cli(["fit", *TINY, "--data.init_args.device_cache", "true",
               "--trainer.fast_dev_run", "true"])
    assert isinstance(run.datamodule.train_dataset, DeviceImageCache)
    assert run.trainer.fit_loop.epoch_loop.batch_progress.current.completed == 1
    assert torch.isfinite(run.trainer.callback_metrics["train/loss"])
