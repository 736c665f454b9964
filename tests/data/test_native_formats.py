"""DataModules on small files written in each dataset's native format."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lit_robust.data import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    GTSRBDataModule,
    ImageFolderDataModule,
    SVHNDataModule,
)
from tests.data.native_dataset_files import (
    write_cifar_pickles,
    write_gtsrb_official,
    write_svhn_mat,
)

CIFAR10_FILES = {**{f"data_batch_{i}": 20 for i in range(1, 6)}, "test_batch": 30}


def _all_batches(loader):
    images, labels = zip(*loader, strict=True)
    return torch.cat(images), torch.cat(labels)


@pytest.mark.parametrize("given", ["parent", "dataset folder"])
def test_cifar10_pickles_round_trip_exactly(tmp_path, given):
    written = write_cifar_pickles(tmp_path / "cifar-10-batches-py", CIFAR10_FILES, "labels", 10)
    root = tmp_path if given == "parent" else tmp_path / "cifar-10-batches-py"
    dm = CIFAR10DataModule(root=str(root), val_size=0, augment=False, num_workers=0,
                           batch_size=16)
    dm.setup("fit")
    dm.setup("test")
    assert len(dm.train_dataset) == 100 and len(dm.test_dataset) == 30
    images, labels = _all_batches(dm.test_dataloader())
    expected_images, expected_labels = written["test_batch"]
    assert torch.equal(images, torch.from_numpy(expected_images).float() / 255)
    assert labels.tolist() == expected_labels and labels.dtype == torch.int64
    train_images, train_labels = _all_batches(dm.train_dataloader())
    assert train_images.shape == (100, 3, 32, 32)
    assert sorted(train_labels.tolist()) == sorted(
        label for name, (_, batch) in written.items() if name != "test_batch" for label in batch)


def test_cifar100_pickles_use_fine_labels(tmp_path):
    written = write_cifar_pickles(tmp_path / "cifar-100-python", {"train": 200, "test": 100},
                                  "fine_labels", 100)
    dm = CIFAR100DataModule(root=str(tmp_path), val_size=0.5, num_workers=0,
                            val_samples_per_class=1, test_samples_per_class=1)
    dm.setup("fit")
    dm.setup("test")
    assert dm.num_classes == 100 and len(dm.class_names) == 100
    assert dm.class_names[:3] == ("apple", "aquarium_fish", "baby")
    assert len(dm.train_dataset) == 100 and len(dm.val_dataset) == 100
    assert len(dm.test_dataset) == 100
    _, labels = _all_batches(dm.test_dataloader())
    assert sorted(labels.tolist()) == list(range(100))
    images, _ = next(iter(dm.test_dataloader()))
    first = dm.test_indices[0].item()
    assert torch.equal(images[0], torch.from_numpy(written["test"][0][first]).float() / 255)


def test_svhn_mat_files_map_label_10_to_digit_0(tmp_path):
    train_images, train_y = write_svhn_mat(tmp_path / "svhn", "train", 40, seed=0)
    test_images, test_y = write_svhn_mat(tmp_path / "svhn", "test", 25, seed=1)
    dm = SVHNDataModule(root=str(tmp_path), val_size=10, num_workers=0, batch_size=64)
    dm.setup("fit")
    dm.setup("test")
    assert len(dm.train_dataset) == 30 and len(dm.val_dataset) == 10
    assert dm.horizontal_flip is False
    images, labels = _all_batches(dm.test_dataloader())
    assert labels.tolist() == [int(y) % 10 for y in test_y[:, 0]]
    assert labels.min() == 0 and labels.max() == 9
    assert torch.equal(images, torch.from_numpy(test_images).float() / 255)
    val_images, val_labels = _all_batches(dm.val_dataloader())
    indices = dm.val_indices.numpy()
    assert torch.equal(val_images, torch.from_numpy(train_images[indices]).float() / 255)
    assert val_labels.tolist() == (train_y[indices, 0] % 10).tolist()


def test_gtsrb_official_layout_resizes_ppm_images_to_32(tmp_path):
    write_gtsrb_official(tmp_path, classes=43, per_class=3, test_count=50)
    dm = GTSRBDataModule(root=str(tmp_path), val_size=0, num_workers=0, batch_size=200)
    dm.setup("fit")
    dm.setup("test")
    assert dm.num_classes == 43 and dm.resize == "resize"
    assert len(dm.train_dataset) == 129 and len(dm.test_dataset) == 50
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (129, 3, 32, 32)
    assert sorted(labels.tolist()) == sorted(list(range(43)) * 3)
    # the red channel encodes the class: label * 5 / 255 (crop padding reflects, so it holds)
    assert torch.allclose(images[:, 0].mean((1, 2)), labels.float() * 5 / 255, atol=1e-6)
    test_images, test_labels = next(iter(dm.test_dataloader()))
    assert test_labels.tolist() == [(3 * i) % 43 for i in range(50)]
    assert torch.allclose(test_images[:, 0].mean((1, 2)), test_labels.float() * 5 / 255,
                          atol=1e-6)


def test_image_folder_with_explicit_dirs_and_mixed_sizes(tmp_path):
    from PIL import Image

    for split, count in (("train", 6), ("test", 2)):
        for name, colour in (("cats", (255, 0, 0)), ("dogs", (0, 0, 255))):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                Image.new("RGB", (60 + 10 * index, 50), colour).save(folder / f"{index}.png")
    dm = ImageFolderDataModule(train_dir=str(tmp_path / "train"), test_dir=str(tmp_path / "test"),
                               image_size=48, val_size=0.25, num_workers=0, batch_size=32)
    assert dm.class_names == ("cats", "dogs") and dm.num_classes == 2
    assert dm.resize == "resize_center_crop"
    dm.setup("fit")
    dm.setup("test")
    assert len(dm.train_dataset) == 9 and len(dm.val_dataset) == 3
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        images, labels = next(iter(loader))
        assert images.shape[1:] == (3, 48, 48)
        red = images[:, 0].mean((1, 2))
        assert torch.allclose(red, (labels == 0).float(), atol=1e-6)
    by_root = ImageFolderDataModule(root=str(tmp_path), image_size=48, num_workers=0, val_size=0)
    by_root.setup("test")
    assert np.array_equal(by_root.test_indices.numpy(), np.arange(4))


def test_upsampled_cifar_keeps_native_images_in_memory(tmp_path):
    write_cifar_pickles(tmp_path / "cifar-10-batches-py", CIFAR10_FILES, "labels", 10)
    transfer = CIFAR10DataModule(root=str(tmp_path), image_size=64, resize="resize_center_crop",
                                 val_size=0, num_workers=0, batch_size=8)
    transfer.setup("fit")
    transfer.setup("test")
    assert transfer.train_dataset.image(0).shape == (3, 32, 32)  # RandomResizedCrop per access
    assert transfer.test_dataset.image(0).shape == (3, 64, 64)  # Resize(73) + CenterCrop(64)
    for loader in (transfer.train_dataloader(), transfer.test_dataloader()):
        images, _ = next(iter(loader))
        assert images.shape == (8, 3, 64, 64) and images.dtype == torch.float32
    squashed = CIFAR10DataModule(root=str(tmp_path), image_size=48, val_size=0, num_workers=0)
    assert squashed.resize == "resize"
    squashed.setup("fit")
    assert next(iter(squashed.train_dataloader()))[0].shape[1:] == (3, 48, 48)


def test_cache_in_memory_does_not_change_evaluation_images(tmp_path):
    write_gtsrb_official(tmp_path, classes=43, per_class=1, test_count=20)
    images = {}
    for cache in (True, False):
        dm = GTSRBDataModule(root=str(tmp_path), val_size=0, num_workers=0,
                             cache_in_memory=cache, augment=False)
        dm.setup("fit")
        dm.setup("test")
        images[cache] = [dm.train_dataset[i][0] for i in range(43)] + [
            dm.test_dataset[i][0] for i in range(20)]
    assert all(torch.equal(a, b) for a, b in zip(images[True], images[False], strict=True))
