"""Every DataModule on the real data in LIT_ROBUST_DATA (CIFAR-10 JPEG, GTSRB Kaggle subset,
Tiny-ImageNet subset, a Stanford Cars class-folder subset)."""

from __future__ import annotations

import csv

import numpy as np
import torch

from lit_robust.data import (
    CIFAR10DataModule,
    GTSRBDataModule,
    ImageFolderDataModule,
    TinyImageNetDataModule,
    read_image,
)


def _check_batch(batch, size: int, num_classes: int) -> None:
    images, labels = batch
    assert images.dtype == torch.float32 and images.shape[1:] == (3, size, size)
    assert images.min() >= 0 and images.max() <= 1 and images.std() > 0.05
    assert labels.dtype == torch.int64 and labels.shape == (len(images),)
    assert 0 <= labels.min() and labels.max() < num_classes


def _labels(dataset) -> np.ndarray:
    return dataset.labels.numpy()


def test_cifar10_jpeg_splits_subsets_and_batches(shared_data):
    dm = CIFAR10DataModule(root=str(shared_data), samples_per_class=10, val_samples_per_class=5,
                           test_samples_per_class=5, num_workers=0, batch_size=32)
    assert (dm.num_classes, dm.image_size, dm.resize) == (10, 32, "none")
    assert dm.mean == (0.4914, 0.4822, 0.4465) and len(dm.std) == 3
    dm.setup("fit")
    dm.setup("test")
    assert len(dm.train_dataset) == 100 and len(dm.val_dataset) == 50
    assert len(dm.test_dataset) == 50
    assert np.bincount(_labels(dm.train_dataset)).tolist() == [10] * 10
    assert np.bincount(_labels(dm.val_dataset)).tolist() == [5] * 10
    assert np.bincount(_labels(dm.test_dataset)).tolist() == [5] * 10
    assert not set(dm.train_indices.tolist()) & set(dm.val_indices.tolist())
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader(),
                   dm.predict_dataloader()):
        _check_batch(next(iter(loader)), 32, 10)
    # evaluation images are the decoded JPEGs, unchanged
    layout, folder = dm._locate()
    assert folder == shared_data / "cifar10-jpeg"
    first = dm.test_indices[0].item()
    files = sorted((folder / "test" / "airplane").iterdir())
    assert torch.equal(dm.test_dataset[0][0], read_image(files[first]).float() / 255)


def test_cifar10_validation_split_is_stratified_fixed_and_independent_of_subsets(shared_data):
    def split(**kwargs):
        dm = CIFAR10DataModule(root=str(shared_data / "cifar10-jpeg"), cache_in_memory=False,
                               num_workers=0, **kwargs)
        dm.setup("fit")
        return dm

    full = split()
    assert len(full.val_indices) == 5000 and len(full.train_indices) == 45000
    assert np.bincount(_labels(full.val_dataset)).tolist() == [500] * 10
    assert sorted(full.train_indices.tolist() + full.val_indices.tolist()) == list(range(50000))
    small, large = split(samples_per_class=5), split(samples_per_class=20)
    assert torch.equal(small.val_indices, full.val_indices)
    assert torch.equal(large.val_indices, full.val_indices)
    assert set(small.train_indices.tolist()) < set(large.train_indices.tolist())
    assert torch.equal(small.train_indices, split(samples_per_class=5).train_indices)
    other = split(samples_per_class=5, split_seed=1)
    assert not torch.equal(other.val_indices, full.val_indices)
    assert not torch.equal(other.train_indices, small.train_indices)
    fraction = split(val_size=1000, train_fraction=0.01)
    assert len(fraction.val_indices) == 1000 and len(fraction.train_indices) == 490
    assert np.bincount(_labels(fraction.train_dataset)).tolist() == [49] * 10
    _check_batch(next(iter(fraction.train_dataloader())), 32, 10)


def test_gtsrb_kaggle_subset(shared_data):
    dm = GTSRBDataModule(root=str(shared_data), samples_per_class=5, test_samples_per_class=3,
                         num_workers=0, batch_size=64)
    assert (dm.num_classes, dm.image_size, dm.resize, dm.horizontal_flip) == (43, 32, "resize",
                                                                               False)
    dm.setup("fit")
    dm.setup("test")
    assert len(dm.val_dataset) == 654  # round(0.1 * 6535), stratified
    assert np.bincount(_labels(dm.train_dataset)).tolist() == [5] * 43
    assert np.bincount(_labels(dm.test_dataset), minlength=43).tolist() == [3] * 43
    assert not set(dm.train_indices.tolist()) & set(dm.val_indices.tolist())
    with open(shared_data / "gtsrb" / "Test.csv", newline="") as handle:
        csv_labels = [int(row["ClassId"]) for row in csv.DictReader(handle)]
    assert _labels(dm.test_dataset).tolist() == [csv_labels[i] for i in dm.test_indices]
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        _check_batch(next(iter(loader)), 32, 43)


def test_tiny_imagenet_subset(shared_data):
    dm = TinyImageNetDataModule(root=str(shared_data), samples_per_class=2,
                                val_samples_per_class=1, test_samples_per_class=1,
                                num_workers=0, batch_size=100)
    assert dm.num_classes == 200 and dm.image_size == 64 and len(dm.class_names) == 200
    wnids = sorted((shared_data / "tiny-imagenet-200" / "wnids.txt").read_text().split())
    assert dm.class_names[wnids.index("n01443537")] == "goldfish"
    dm.setup("fit")
    dm.setup("test")
    assert (len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)) == (400, 200, 200)
    assert np.bincount(_labels(dm.test_dataset)).tolist() == [1] * 200
    annotations = dict(
        line.split("\t")[:2]
        for line in (shared_data / "tiny-imagenet-200" / "val" / "val_annotations.txt")
        .read_text().splitlines()
    )
    full_test = dm._read("test")
    for index in dm.test_indices[:20].tolist():
        name = full_test.files[index].rsplit("/", 1)[1]
        assert wnids[full_test.labels[index]] == annotations[name]
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        _check_batch(next(iter(loader)), 64, 200)


def test_image_folder_on_stanford_cars_transfer_protocol(shared_data):
    cars = shared_data / "transfer" / "stanford_cars"
    dm = ImageFolderDataModule(root=str(cars), image_size=96, val_size=0,
                               test_samples_per_class=1, num_workers=0, batch_size=50)
    assert dm.num_classes == 196 and dm.resize == "resize_center_crop"
    assert dm.mean == (0.485, 0.456, 0.406)
    dm.setup("fit")
    dm.setup("test")
    assert dm.val_dataset is None and dm.val_dataloader() == []
    assert len(dm.train_dataset) == 196 and len(dm.test_dataset) == 196
    _check_batch(next(iter(dm.train_dataloader())), 96, 196)
    _check_batch(next(iter(dm.test_dataloader())), 96, 196)


def test_worker_processes_deliver_the_same_evaluation_batches(shared_data):
    kwargs = dict(root=str(shared_data), samples_per_class=3, test_samples_per_class=4,
                  batch_size=16)
    in_process = CIFAR10DataModule(num_workers=0, **kwargs)
    workers = CIFAR10DataModule(num_workers=2, **kwargs)
    for dm in (in_process, workers):
        dm.setup("test")
    for (a, y), (b, z) in zip(in_process.test_dataloader(), workers.test_dataloader(),
                              strict=True):
        assert torch.equal(a, b) and torch.equal(y, z)
