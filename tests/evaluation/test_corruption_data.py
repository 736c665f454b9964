from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lit_robust.evaluation.corruptions.files import open_corrupted
from tests.evaluation.corruption_files import PER_SEVERITY, write_cifar_c, write_tiny_imagenet_c


@pytest.mark.parametrize(("dataset", "folder"), [("cifar10", "CIFAR-10-C"),
                                                 ("cifar100", "CIFAR-100-C")])
def test_cifar_c_npy_reads_one_severity_block(tmp_path: Path, dataset: str, folder: str) -> None:
    write_cifar_c(tmp_path, folder)
    images = open_corrupted(dataset, "fog", 3, root=tmp_path)
    assert len(images) == PER_SEVERITY
    assert images.labels.tolist() == [0, 1, 2, 0, 1, 2]
    batch = images.images([1, 4])
    assert batch.shape == (2, 3, 32, 32) and str(batch.dtype) == "torch.uint8"
    assert batch[:, 0, 0, 0].tolist() == [31, 34]


def test_cifar_c_root_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cifar_c(tmp_path)
    monkeypatch.setenv("LIT_ROBUST_DATA", str(tmp_path))
    assert open_corrupted("cifar10", "fog", 5).images([0])[0, 0, 0, 0] == 50


def test_tiny_imagenet_c_folder_layout(tmp_path: Path) -> None:
    write_tiny_imagenet_c(tmp_path)
    images = open_corrupted("tinyimagenet", "fog", 2, root=tmp_path)
    # sorted wnids: n01 -> 0, n02 -> 1
    assert images.labels.tolist() == [0, 0, 1, 1]
    pixels = images.images([0, 1, 2, 3])
    assert pixels.shape == (4, 3, 64, 64)
    assert (pixels[:, 0, 32, 32].int() - np.array([60, 70, 20, 30])).abs().max() <= 2
    ordered = open_corrupted("tinyimagenet", "fog", 2, root=tmp_path,
                             class_names=["n02", "n01"])
    assert ordered.labels.tolist() == [1, 1, 0, 0]
    with pytest.raises(ValueError, match="class_names"):
        open_corrupted("tinyimagenet", "fog", 2, root=tmp_path, class_names=["n01"])


def test_missing_files_explain_the_layout(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"<corruption>\.npy"):
        open_corrupted("cifar10", "snow", 1, root=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"<severity 1-5>/<wnid>/\*\.JPEG"):
        open_corrupted("tinyimagenet", "snow", 1, root=tmp_path)


def test_bad_arguments_and_shapes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset"):
        open_corrupted("svhn", "fog", 1, root=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="severity"):
        open_corrupted("cifar10", "fog", 0, root=tmp_path)
    target = tmp_path / "CIFAR-10-C"
    target.mkdir()
    np.save(target / "fog.npy", np.zeros((7, 32, 32, 3), dtype=np.uint8))
    np.save(target / "labels.npy", np.zeros(7, dtype=np.uint8))
    with pytest.raises(ValueError, match="shape"):
        open_corrupted("cifar10", "fog", 1, root=tmp_path)
