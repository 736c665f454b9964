"""Clear, early errors: missing data, failed downloads, bad arguments, inconsistent files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lit_robust.data import (
    CIFAR10DataModule,
    DatasetNotFoundError,
    ImageFolderDataModule,
    SVHNDataModule,
    TinyImageNetDataModule,
)
from lit_robust.data import cifar as cifar_module
from lit_robust.paths import STARTUP_DIRECTORY
from tests.data.native_dataset_files import write_cifar_pickles

CIFAR10_FILES = {**{f"data_batch_{i}": 10 for i in range(1, 6)}, "test_batch": 10}


def test_missing_cifar_names_dataset_root_and_layouts(tmp_path):
    dm = CIFAR10DataModule(root=str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as caught:
        dm.prepare_data()
    message = str(caught.value)
    assert isinstance(caught.value, FileNotFoundError)
    assert message.startswith(f"CIFAR-10 not found under root '{tmp_path}'")
    assert "expected inside it: {data_batch_1, ..., data_batch_5, test_batch}" in message
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "{train,test}/<class name>/*.{jpg,png}" in message
    assert str(tmp_path / "cifar10-jpeg") in message
    assert "download=True" in message
    with pytest.raises(DatasetNotFoundError):
        dm.setup("fit")


def test_root_defaults_to_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("LIT_ROBUST_DATA", str(tmp_path / "somewhere"))
    assert SVHNDataModule().root == tmp_path / "somewhere"
    monkeypatch.delenv("LIT_ROBUST_DATA")
    assert SVHNDataModule().root == STARTUP_DIRECTORY / "data"


def test_relative_root_means_the_start_directory_after_a_chdir(shared_data, tmp_path,
                                                               monkeypatch):
    relative = os.path.relpath(shared_data, STARTUP_DIRECTORY)
    assert not Path(relative).is_absolute()
    monkeypatch.setenv("LIT_ROBUST_DATA", relative)
    monkeypatch.chdir(tmp_path)
    dm = CIFAR10DataModule(test_samples_per_class=1)
    dm.setup("test")
    assert dm.root == Path(os.path.normpath(shared_data.absolute()))
    assert len(dm.test_dataset) == 10
    explicit = CIFAR10DataModule(root=relative)
    assert explicit.root == Path(os.path.normpath(shared_data.absolute()))


def test_not_found_error_prints_the_resolved_absolute_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LIT_ROBUST_DATA", "no-such-folder")
    with pytest.raises(DatasetNotFoundError) as caught:
        SVHNDataModule().setup("fit")
    absolute = STARTUP_DIRECTORY / "no-such-folder"
    assert str(caught.value).startswith(f"SVHN not found under root '{absolute}'")


def test_missing_tiny_imagenet_says_it_cannot_be_downloaded(tmp_path):
    with pytest.raises(DatasetNotFoundError) as caught:
        TinyImageNetDataModule(root=str(tmp_path)).setup("test")
    message = str(caught.value)
    assert "Tiny-ImageNet-200 not found" in message
    assert "val/val_annotations.txt" in message and "cannot be downloaded" in message
    with pytest.raises(ValueError, match="cannot be downloaded automatically"):
        TinyImageNetDataModule(root=str(tmp_path), download=True)


def test_failed_download_raises_not_found_with_the_cause(tmp_path, monkeypatch):
    class Offline:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("network unreachable")

    monkeypatch.setattr(cifar_module.datasets, "CIFAR10", Offline)
    dm = CIFAR10DataModule(root=str(tmp_path), download=True)
    with pytest.raises(DatasetNotFoundError, match="network unreachable") as caught:
        dm.prepare_data()
    assert isinstance(caught.value.__cause__, RuntimeError)
    message = str(caught.value)
    assert "CIFAR-10 not found" in message
    # after a failed download, the advice is not "pass download=True" again
    assert "Or pass download=True" not in message
    assert message.endswith(
        f"Downloading into {tmp_path} failed: RuntimeError('network unreachable'). Check the "
        "network connection and the free space and run again with download=True, or get the "
        "files from the dataset's official site and unpack them as above.")


def test_download_skipped_when_files_exist(tmp_path, monkeypatch):
    write_cifar_pickles(tmp_path / "cifar-10-batches-py", CIFAR10_FILES, "labels", 10)

    def fail(*args, **kwargs):
        raise AssertionError("must not download")

    monkeypatch.setattr(cifar_module.datasets, "CIFAR10", fail)
    CIFAR10DataModule(root=str(tmp_path), download=True).prepare_data()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"eval_batch_size": -2}, "eval_batch_size must be a positive integer"),
        ({"num_workers": -1}, "num_workers must be >= 0"),
        ({"val_size": 1.0}, r"val_size must be an int count >= 0 or a float fraction in \[0, 1\)"),
        ({"val_size": -3}, "val_size must be"),
        ({"val_size": True}, "val_size must be"),
        ({"train_fraction": 0.5, "samples_per_class": 10}, "not both"),
        ({"train_fraction": 0.0}, r"train_fraction must be in \(0, 1\]"),
        ({"train_fraction": 1.5}, r"train_fraction must be in \(0, 1\]"),
        ({"samples_per_class": 0}, "samples_per_class must be a positive integer"),
        ({"val_size": 0, "val_samples_per_class": 5}, "needs a validation split"),
        ({"test_samples_per_class": 2.5}, "test_samples_per_class must be a positive integer"),
        ({"image_size": 0}, "image_size must be a positive integer"),
        ({"resize": "stretch"}, "resize must be 'auto' or one of"),
        ({"crop_padding": -1}, "crop_padding must be >= 0"),
        ({"split_seed": -1}, "split_seed must be >= 0"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CIFAR10DataModule(**kwargs)


def test_inconsistent_data_fails_at_setup(tmp_path):
    write_cifar_pickles(tmp_path / "cifar-10-batches-py", CIFAR10_FILES, "labels", 10)
    with pytest.raises(ValueError, match="leaves none of the 50 CIFAR-10 training images"):
        CIFAR10DataModule(root=str(tmp_path), val_size=50).setup("fit")
    with pytest.raises(ValueError, match=r"samples_per_class=6, but these classes"):
        CIFAR10DataModule(root=str(tmp_path), val_size=0, samples_per_class=6).setup("fit")
    with pytest.raises(ValueError, match="image_size=64 with resize='none'"):
        CIFAR10DataModule(root=str(tmp_path), image_size=64, resize="none").setup("fit")

    bad = tmp_path / "bad"
    twelve_each = dict.fromkeys(CIFAR10_FILES, 12)
    write_cifar_pickles(bad / "cifar-10-batches-py", twelve_each, "labels", 11)
    with pytest.raises(ValueError, match=r"train labels span 0\.\.10, outside 0\.\.9"):
        CIFAR10DataModule(root=str(bad)).setup("fit")


def test_class_folders_must_match_the_dataset_classes(tmp_path):
    for split in ("train", "test"):
        for name in ("airplane", "cat"):
            (tmp_path / "cifar10" / split / name).mkdir(parents=True)
    with pytest.raises(ValueError, match=r"class folders in .* are \['airplane', 'cat'\]"):
        CIFAR10DataModule(root=str(tmp_path)).setup("fit")


def test_image_folder_arguments_and_missing_folders(tmp_path):
    with pytest.raises(ValueError, match="both train_dir and test_dir"):
        ImageFolderDataModule(train_dir=str(tmp_path))
    with pytest.raises(ValueError, match="cannot be downloaded"):
        ImageFolderDataModule(root=str(tmp_path), download=True)
    dm = ImageFolderDataModule(train_dir=str(tmp_path / "a"), test_dir=str(tmp_path / "b"))
    with pytest.raises(DatasetNotFoundError, match="train_dir .* is not a folder"):
        dm.prepare_data()
    with pytest.raises(DatasetNotFoundError, match=r"\{train,test\}/<class name>/<image>"):
        ImageFolderDataModule(root=str(tmp_path)).prepare_data()
